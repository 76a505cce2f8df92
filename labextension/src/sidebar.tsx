import { Button, ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { CellPositions } from './cells';
import { Captured, CellLink, ICellLinks, Inference, Problems, Steps } from './components/Pipeline';
import { StepGraph } from './components/Graph';
import { RoleButtons } from './components/Roles';
import { RunHistory } from './components/History';
import { RunControls, RunProgress } from './components/Runs';
import { JobList, ScheduleForm } from './components/Schedule';
import { DeployForm } from './components/Deploy';
import { exportAndDeploy } from './deploy';
import { ICellMark, Role } from './marks';
import { FINISHED, SidebarModel } from './model';
import { IStep } from './types';

/** What the sidebar asks of the application (kept out of the model: UI actions). */
export interface ISidebarActions {
  /** Where the analysed cells are in the notebook now. */
  positions: () => CellPositions | null;
  setRole: (role: Role, stepName: string) => string | null;
  /** Set the active step or data cell's prepare flag; why not, or null. */
  setPrepare: (on: boolean) => string | null;
  /** Mark the saved cells `cells` prepare (the analysis' suggestion); why not, or null. */
  markPrepare: (cells: number[]) => string | null;
  /** The active code cell: its number on screen and its mark. */
  activeCell: () => { number: number; mark: ICellMark | null } | null;
  openFile: (path: string) => void;
  /** The names of the kernels installed on the server, for the run form. */
  kernels: () => string[];
  newNotebook: () => void;
  /** Select the cells of a step of the graph; why not, or null. */
  selectStep: (step: IStep) => string | null;
  /** Make step `to` run after step `from` (`--after`), and save; why not, or null. */
  connectSteps: (from: string, to: string) => string | null;
}

function Section(props: { title: string; children: React.ReactNode }): JSX.Element {
  return (
    <section className="jp-mlops-section">
      <h3>{props.title}</h3>
      {props.children}
    </section>
  );
}

/** The server extension does not answer: how to turn it on, and a retry. */
function ServerMissing(props: { message: string; onRetry: () => void; busy: boolean }): JSX.Element {
  return (
    <div className="jp-mlops-missing">
      <p>{props.message}</p>
      <Button className="jp-mlops-retry jp-mod-styled" small disabled={props.busy} onClick={props.onRetry}>
        Retry
      </Button>
    </div>
  );
}

/** No notebook: what the panel is for, and a way to start (no launcher entry needed). */
function EmptyState(props: { onNew: () => void }): JSX.Element {
  return (
    <div className="jp-mlops-empty-state">
      <p className="jp-mlops-empty">Open a notebook to see its pipeline.</p>
      <p className="jp-mlops-hint">
        Mark its cells here (setup, params, step, data, model, metrics) to make a pipeline of small notebooks
        that you can export, run and schedule.
      </p>
      <Button className="jp-mlops-new-notebook jp-mod-styled" small onClick={props.onNew}>
        New notebook
      </Button>
    </div>
  );
}

function SidebarView(props: { model: SidebarModel; actions: ISidebarActions }): JSX.Element {
  const { model, actions } = props;
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    const update = (): void => setTick(t => t + 1);
    model.changed.connect(update);
    return () => {
      model.changed.disconnect(update);
    };
  }, [model]);
  const s = model.state;
  if (s.serverMissing) {
    return (
      <div className="jp-mlops-sidebar">
        <ServerMissing message={s.serverMissing} busy={!!s.busy} onRetry={() => void model.retry()} />
      </div>
    );
  }
  if (!s.notebook) {
    return (
      <div className="jp-mlops-sidebar">
        <EmptyState onNew={actions.newNotebook} />
      </div>
    );
  }
  const a = s.analysis;
  const positions = actions.positions();
  const links: ICellLinks = {
    label: n => positions?.label(n) ?? n,
    onCell: n => positions?.scrollTo(n)
  };
  const running = !!s.run && !FINISHED.has(s.run.status);
  const stepStatus: Record<string, string> = {};
  s.run?.steps.forEach(step => (stepStatus[step.name] = step.status));
  return (
    <div className="jp-mlops-sidebar" data-analyses={s.analyses}>
      <header className="jp-mlops-title">
        <span className="jp-mlops-title-text" title={s.notebook.context.path}>
          {a ? `Pipeline ${a.pipeline.name}` : 'Pipeline'}
        </span>
        <button className="jp-mlops-link jp-mlops-refresh" onClick={() => void model.refresh()} title="Analyse again">
          ↻
        </button>
      </header>
      {s.busy && <div className="jp-mlops-busy">{s.busy}…</div>}
      {s.notice && (
        <div className="jp-mlops-notice" data-kind={s.notice.kind}>
          {s.notice.text}
        </div>
      )}
      {s.error && (
        <div className="jp-mlops-error jp-mlops-request-error">
          {s.error.cell !== null && <CellLink cell={s.error.cell} links={links} />} {s.error.message}
          <Problems problems={s.error.problems.slice(1)} links={links} />
        </div>
      )}
      <Section title="Mark cells">
        <RoleButtons
          roles={a?.roles ?? []}
          active={actions.activeCell()}
          onRole={actions.setRole}
          onPrepare={on => {
            const problem = actions.setPrepare(on);
            setTick(t => t + 1); // the cell's first line or tags changed: show its mark now
            return problem;
          }}
        />
      </Section>
      {!a && !s.error && <p className="jp-mlops-empty">Analysing…</p>}
      {a && (
        <>
          {a.stale && <div className="jp-mlops-warning jp-mlops-stale">Exported pipeline: {a.stale}</div>}
          {a.problems.length > 0 && (
            <Section title="Problems">
              <Problems problems={a.problems} links={links} />
            </Section>
          )}
          <Section title="Steps">
            <StepGraph
              steps={a.pipeline.steps}
              status={stepStatus}
              onSelect={actions.selectStep}
              onConnect={actions.connectSteps}
            />
            <Steps analysis={a} links={links} />
            <Inference analysis={a} links={links} onMarkPrepare={actions.markPrepare} />
          </Section>
          <Section title="Captured">
            <Captured analysis={a} problems={s.captureProblems} links={links} />
          </Section>
          <Section title="Run">
            <RunControls
              parameters={a.pipeline.parameters}
              kernel={a.pipeline.kernel.name ?? ''}
              kernels={actions.kernels()}
              busy={s.busy}
              running={running}
              onExport={() => void model.exportPipeline()}
              onRun={(values, kernel) => void model.run(values, kernel)}
              onCancel={() => void model.cancel()}
            />
            {s.run && <RunProgress run={s.run} links={links} />}
          </Section>
          {a.exported && (
            <Section title="Schedule">
              <ScheduleForm
                key={a.pipeline_dir}
                pipeline={a.pipeline.name}
                parameters={a.pipeline.parameters}
                busy={s.busy}
                error={s.scheduleError}
                onSchedule={request => model.jobs.create(request)}
              />
              <JobList
                jobs={s.jobs}
                scheduler={s.scheduler}
                busy={s.busy}
                onState={(name, action) => void model.jobs.setState(name, action)}
                onDelete={name => void model.jobs.remove(name)}
              />
            </Section>
          )}
          {a.exported && (
            <Section title="Deploy">
              <DeployForm
                key={a.pipeline_dir}
                pipelineDir={a.pipeline_dir}
                jobs={s.jobs.map(job => job.name)}
                busy={s.busy}
                onDeploy={(target, options) => exportAndDeploy(() => model.exportPipeline(), target, options)}
                onOpen={actions.openFile}
              />
            </Section>
          )}
          <Section title="History">
            <RunHistory
              key={a.pipeline_dir}
              runs={s.runs}
              details={id => model.runDetails(id)}
              compare={(x, y) => model.compareRuns(x, y)}
              onOpen={actions.openFile}
            />
          </Section>
        </>
      )}
    </div>
  );
}

/** The left-area panel of jupyter-mlops. */
export class MlopsSidebar extends ReactWidget {
  constructor(
    readonly model: SidebarModel,
    private readonly actions: ISidebarActions
  ) {
    super();
    this.id = 'jupyter-mlops-sidebar';
    this.addClass('jp-mlops-panel');
  }

  protected render(): JSX.Element {
    return <SidebarView model={this.model} actions={this.actions} />;
  }
}
