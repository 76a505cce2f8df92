import { MlopsError, post, requestAPI } from './api';
import type { ISidebarState } from './model';
import { IExportReply, IJob, IJobRequest, IJobsReply } from './types';

/** What the jobs calls need of the sidebar's model. */
export interface IJobsHost {
  readonly state: ISidebarState;
  emit: () => void;
  /** Save and export the notebook; its reply, or null when that failed (and said so). */
  exportPipeline: () => Promise<IExportReply | null>;
  /** Read the run history again (and, with it, the jobs); failures are shown. */
  reloadRuns: () => Promise<void>;
  /** Show a failed request that is not the schedule's. */
  fail: (error: unknown) => void;
}

/** The pipeline's scheduled jobs: read, made, paused, resumed and deleted through
 * /mlops/jobs; their state lives in the sidebar's state (`jobs`, `scheduler`,
 * `scheduleError`). */
export class JobsModel {
  constructor(private readonly host: IJobsHost) {}

  /** Export, then make a job of the pipeline (the server checks the schedule, the
   * parameters and the alerts); true once it is made. */
  async create(request: Omit<IJobRequest, 'pipeline'>): Promise<boolean> {
    const exported = await this.host.exportPipeline();
    if (!exported) {
      return false;
    }
    return this.action('Scheduling', async pipeline => {
      const job = await requestAPI<IJob>('jobs', post({ ...request, pipeline }));
      this.host.state.notice = { text: `Job ${job.name} scheduled: ${job.schedule.text}`, kind: 'success' };
    });
  }

  /** Pause or resume a job. */
  async setState(name: string, action: 'pause' | 'resume'): Promise<void> {
    await this.action(action === 'pause' ? 'Pausing' : 'Resuming', async pipeline => {
      await requestAPI<IJob>(`jobs/${encodeURIComponent(name)}`, post({ pipeline, action }));
    });
  }

  /** Delete a job (the runs it started stay). */
  async remove(name: string): Promise<void> {
    await this.action('Deleting the job', async pipeline => {
      await requestAPI(`jobs/${encodeURIComponent(name)}`, { method: 'DELETE' }, { pipeline });
      this.host.state.notice = { text: `Job ${name} deleted`, kind: 'info' };
    });
  }

  /** The pipeline's jobs; a refusal is shown beside the schedule form. */
  async load(pipeline: string): Promise<void> {
    const state = this.host.state;
    try {
      const reply = await requestAPI<IJobsReply>('jobs', {}, { pipeline });
      if (pipeline !== state.analysis?.pipeline_dir) {
        return; // another notebook meanwhile
      }
      state.jobs = reply.jobs;
      state.scheduler = reply.scheduler;
      this.watch();
      this.host.emit();
    } catch (error) {
      this.fail(error);
    }
  }

  /** Stop watching the jobs (another notebook, or disposed). */
  stop(): void {
    clearTimeout(this._timer);
  }

  /** Read the runs and jobs again when a job's next run is due (or, while a scheduled run
   * goes, every few seconds), so that scheduled runs show up without a refresh. */
  private watch(): void {
    this.stop();
    const jobs = this.host.state.jobs;
    if (!jobs.length) {
      return;
    }
    let wait = 600_000;
    for (const job of jobs) {
      if (job.next_run !== null) {
        wait = Math.min(wait, job.next_run * 1000 - Date.now() + 2000);
      }
      if (job.last_runs[0]?.outcome === 'started') {
        wait = Math.min(wait, 5000);
      }
    }
    this._timer = window.setTimeout(() => void this.host.reloadRuns(), Math.max(wait, 5000));
  }

  private async action(what: string, work: (pipeline: string) => Promise<void>): Promise<boolean> {
    const state = this.host.state;
    const pipeline = state.analysis?.pipeline_dir;
    if (!pipeline) {
      return false;
    }
    state.busy = what;
    state.scheduleError = null;
    this.host.emit();
    try {
      await work(pipeline);
      await this.load(pipeline);
      return true;
    } catch (error) {
      this.fail(error);
      return false;
    } finally {
      state.busy = null;
      this.host.emit();
    }
  }

  private fail(error: unknown): void {
    if (error instanceof MlopsError && !error.serverMissing) {
      this.host.state.scheduleError = error.message;
      this.host.emit();
    } else {
      this.host.fail(error);
    }
  }

  private _timer = 0;
}
