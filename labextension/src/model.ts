import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { MlopsError, post, requestAPI } from './api';
import { ICaptureOutcome } from './capture';
import { JobsModel } from './jobs';
import {
  IAnalysis,
  IExportReply,
  IJob,
  IProblem,
  IRunComparison,
  IRunStarted,
  IRunStatus,
  IRunSummary,
  IRunsReply
} from './types';

/** What the sidebar shows; every field changes only through SidebarModel. */
export interface ISidebarState {
  notebook: NotebookPanel | null;
  analysis: IAnalysis | null;
  /** The last failed request, in one line, with the cell it concerns. */
  error: {
    message: string;
    cell: number | null;
    problems: IProblem[];
    /** What failed: the analysis (cleared by the next one) or a user's action. */
    source: 'analyze' | 'action';
  } | null;
  /** The server extension is missing or broken. */
  serverMissing: string | null;
  busy: string | null;
  notice: INotice | null;
  /** How many analyses have arrived for this notebook (the panel shows it as data-analyses). */
  analyses: number;
  /** Captures of tag-marked cells that went wrong, by cell id: what the kernel said. */
  captureProblems: Record<string, string[]>;
  run: IRunStatus | null;
  runs: IRunSummary[];
  /** The pipeline's scheduled jobs. */
  jobs: IJob[];
  /** Whether the server runs a scheduler (null until the jobs are read). */
  scheduler: boolean | null;
  /** The server's one line on the last refused schedule or job action. */
  scheduleError: string | null;
}

/** A one-line message of the panel, and what kind of news it is (its colour). */
export interface INotice {
  text: string;
  kind: 'success' | 'info' | 'warning' | 'error';
}

export const FINISHED = new Set(['succeeded', 'failed', 'cancelled', 'interrupted']);

/** How a finished run is announced: only a success in green. */
function runNotice(runId: string, status: string): INotice {
  const kind = status === 'succeeded' ? 'success' : status === 'cancelled' ? 'warning' : 'error';
  return { text: `Run ${runId} ${status}`, kind };
}

/** The sidebar's state for the active notebook, and the calls that change it. */
export class SidebarModel {
  readonly state: ISidebarState = {
    notebook: null,
    analysis: null,
    error: null,
    serverMissing: null,
    busy: null,
    notice: null,
    analyses: 0,
    captureProblems: {},
    run: null,
    runs: [],
    jobs: [],
    scheduler: null,
    scheduleError: null
  };

  /** The pipeline's scheduled jobs. */
  readonly jobs = new JobsModel({
    state: this.state,
    emit: () => this.emit(),
    exportPipeline: () => this.exportPipeline(),
    reloadRuns: () => this.loadRuns().catch(error => this.fail(error)),
    fail: error => this.fail(error)
  });

  constructor() {
    NotebookActions.executed.connect((_, args) => {
      if (this.autoRefresh && this.state.notebook && args.notebook === this.state.notebook.content) {
        this.scheduleRefresh(); // captures land in <stem>.mlops.json as cells run
      }
    });
  }

  /** Analyse again on every save and cell run (the user's setting). */
  autoRefresh = true;

  /** The sidebar changed the notebook and saves it: analyse once it is saved, whatever the
   * setting says. */
  analyseAfterSave(): void {
    this._ownSave = true;
  }

  /** Emitted after every change of state. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Follow another notebook (or none). */
  setNotebook(panel: NotebookPanel | null): void {
    if (panel === this.state.notebook) {
      return;
    }
    const old = this.state.notebook;
    if (old) {
      old.context.saveState.disconnect(this.onSaved, this);
      old.context.pathChanged.disconnect(this.onRenamed, this);
      old.model?.cells.changed.disconnect(this.emit, this);
    }
    this.stopPolling();
    this.jobs.stop();
    Object.assign(this.state, {
      notebook: panel,
      analysis: null,
      error: null,
      notice: null,
      analyses: 0,
      captureProblems: {},
      run: null,
      runs: [],
      jobs: [],
      scheduler: null,
      scheduleError: null
    });
    this.emit();
    if (panel) {
      panel.context.saveState.connect(this.onSaved, this);
      panel.context.pathChanged.connect(this.onRenamed, this);
      void panel.context.ready.then(() => {
        if (panel !== this.state.notebook) {
          return; // another notebook meanwhile
        }
        // cells inserted or moved: their numbers on the panel follow them at once
        panel.model?.cells.changed.connect(this.emit, this);
        return this.refresh();
      });
    }
  }

  /** Ask the server again after it was found missing. */
  async retry(): Promise<void> {
    this.state.serverMissing = null;
    this.state.busy = 'Asking the server again';
    this.emit();
    try {
      await this.refresh();
    } finally {
      this.state.busy = null;
      this.emit();
    }
  }

  /** Say something in the panel's one-line notice. */
  say(text: string, kind: INotice['kind'] = 'info'): void {
    this.state.notice = { text, kind };
    this.emit();
  }

  /** What the kernel said to the capture of a tag-marked cell; the record changed. */
  captured(panel: NotebookPanel, outcome: ICaptureOutcome): void {
    if (panel !== this.state.notebook || outcome.status === 'aborted') {
      return;
    }
    const problems = { ...this.state.captureProblems };
    if (outcome.problems.length) {
      problems[outcome.cellId] = outcome.problems;
    } else {
      delete problems[outcome.cellId];
    }
    this.state.captureProblems = problems;
    this.emit();
    if (this.autoRefresh) {
      this.scheduleRefresh();
    }
  }

  /** Analyse the saved notebook again, then its runs. */
  async refresh(): Promise<void> {
    const panel = this.state.notebook;
    if (!panel) {
      return;
    }
    try {
      const analysis = await requestAPI<IAnalysis>('analyze', post({ path: panel.context.path }));
      if (panel !== this.state.notebook) {
        return;
      }
      this.state.analysis = analysis;
      this.state.analyses += 1;
      if (this.state.error?.source === 'analyze') {
        this.state.error = null; // an export's refusal stays until the next action
      }
      this.state.serverMissing = null;
      this.emit();
      if (analysis.exported) {
        await this.loadRuns();
      }
    } catch (error) {
      this.fail(error, 'analyze');
    }
  }

  /** Export the notebook into its pipeline folder. */
  async exportPipeline(): Promise<IExportReply | null> {
    const panel = this.state.notebook;
    if (!panel) {
      return null;
    }
    return this.busyWith('Exporting', async () => {
      if (panel.context.model.dirty) {
        await panel.context.save();
      }
      const reply = await requestAPI<IExportReply>('export', post({ path: panel.context.path }));
      this.state.notice = {
        text: `Exported ${reply.steps.length} steps to ${reply.pipeline_dir}`,
        kind: 'success'
      };
      await this.refresh();
      return reply;
    });
  }

  /** Save and export (so that the run runs what the notebook says), then start a run with
   * the given parameter values (its steps in ``kernel`` when given, else the pipeline's);
   * follow its progress. */
  async run(parameters: Record<string, string>, kernel?: string): Promise<void> {
    const exported = await this.exportPipeline();
    if (!exported) {
      return;
    }
    await this.busyWith('Starting the run', async () => {
      const started = await requestAPI<IRunStarted>(
        'runs',
        post({ pipeline: exported.pipeline_dir, parameters, ...(kernel ? { kernel } : {}) })
      );
      this.state.notice = {
        text: `Saved, exported ${exported.steps.length} steps; run ${started.run_id} started`,
        kind: 'info'
      };
      this.state.run = { run_id: started.run_id, status: 'starting', steps: [] };
      this.follow(started.run_id);
    });
  }

  /** Cancel the run in progress. */
  async cancel(): Promise<void> {
    const run = this.state.run;
    const pipeline = this.state.analysis?.pipeline_dir;
    if (!run || !pipeline) {
      return;
    }
    await this.busyWith('Cancelling', async () => {
      await requestAPI(`runs/${run.run_id}`, { method: 'DELETE' }, { pipeline });
      this.state.notice = { text: `Cancelling run ${run.run_id}`, kind: 'info' };
    });
  }

  /** A run's record with its steps and notebook links. */
  async runDetails(runId: string): Promise<IRunStatus | null> {
    const pipeline = this.state.analysis?.pipeline_dir;
    if (!pipeline) {
      return null;
    }
    try {
      return await requestAPI<IRunStatus>(`runs/${runId}`, {}, { pipeline });
    } catch (error) {
      this.fail(error);
      return null;
    }
  }

  /** Two runs side by side: parameters, data fingerprints, outputs and metrics. */
  async compareRuns(a: string, b: string): Promise<IRunComparison | null> {
    const pipeline = this.state.analysis?.pipeline_dir;
    if (!pipeline) {
      return null;
    }
    try {
      return await requestAPI<IRunComparison>(
        `runs/${encodeURIComponent(a)}/diff/${encodeURIComponent(b)}`,
        {},
        { pipeline }
      );
    } catch (error) {
      this.fail(error);
      return null;
    }
  }

  /** Dispose of timers and signal connections. */
  dispose(): void {
    this.stopPolling();
    this.jobs.stop();
    if (this._refreshTimer) {
      clearTimeout(this._refreshTimer);
    }
    Signal.clearData(this);
  }

  private async loadRuns(): Promise<void> {
    const pipeline = this.state.analysis?.pipeline_dir;
    if (!pipeline) {
      return;
    }
    const reply = await requestAPI<IRunsReply>('runs', {}, { pipeline });
    this.state.runs = reply.runs;
    if (!this._polling && reply.active.length) {
      this.follow(reply.active[0]); // a run started before this tab was opened
    }
    this.emit();
    await this.jobs.load(pipeline);
  }

  private follow(runId: string): void {
    this.stopPolling();
    this._polling = window.setInterval(() => void this.poll(runId), 700);
    void this.poll(runId);
  }

  private async poll(runId: string): Promise<void> {
    const pipeline = this.state.analysis?.pipeline_dir;
    if (!pipeline) {
      return;
    }
    try {
      const run = await requestAPI<IRunStatus>(`runs/${runId}`, {}, { pipeline });
      this.state.run = run;
      if (FINISHED.has(run.status)) {
        this.stopPolling();
        this.state.notice = runNotice(run.run_id, run.status);
        await this.loadRuns();
      }
      this.emit();
    } catch (error) {
      this.stopPolling();
      this.fail(error);
    }
  }

  private stopPolling(): void {
    if (this._polling) {
      clearInterval(this._polling);
      this._polling = 0;
    }
  }

  private onSaved(_: unknown, state: string): void {
    if (state === 'completed' && (this.autoRefresh || this._ownSave)) {
      this._ownSave = false;
      this.scheduleRefresh();
    }
  }

  /** The notebook was renamed or moved: its pipeline is another one now. */
  private onRenamed(): void {
    this.stopPolling();
    Object.assign(this.state, { analysis: null, run: null, runs: [], jobs: [], notice: null });
    this.emit();
    void this.refresh();
  }

  /** Analyse again shortly (several saves and runs in a row make one request). */
  scheduleRefresh(): void {
    if (this._refreshTimer) {
      clearTimeout(this._refreshTimer);
    }
    this._refreshTimer = window.setTimeout(() => void this.refresh(), 300);
  }

  private async busyWith<T>(what: string, work: () => Promise<T>): Promise<T | null> {
    this.state.busy = what;
    this.state.error = null;
    this.emit();
    try {
      return await work();
    } catch (error) {
      this.fail(error);
      return null;
    } finally {
      this.state.busy = null;
      this.emit();
    }
  }

  private fail(error: unknown, source: 'analyze' | 'action' = 'action'): void {
    if (error instanceof MlopsError && error.serverMissing) {
      this.state.serverMissing = error.message;
    } else if (error instanceof MlopsError) {
      this.state.error = {
        message: error.message,
        cell: error.cell,
        problems: error.problems,
        source
      };
    } else {
      this.state.error = { message: String(error), cell: null, problems: [], source };
    }
    this.emit();
  }

  private emit(): void {
    this._changed.emit();
  }

  private _changed = new Signal<this, void>(this);
  private _polling = 0;
  private _refreshTimer = 0;
  private _ownSave = false;
}
