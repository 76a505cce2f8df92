import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Captured, Problems, Steps } from './components/Pipeline';
import { StepGraph } from './components/Graph';
import { RoleButtons } from './components/Roles';
import { RunControls, RunHistory, RunProgress } from './components/Runs';
import { JobList, ScheduleForm } from './components/Schedule';
import { SidebarModel } from './model';
import { Role } from './tags';

/** What the sidebar asks of the application (kept out of the model: UI actions). */
export interface ISidebarActions {
  scrollToCell: (cell: number) => void;
  setRole: (role: Role, stepName: string) => string | null;
  activeCell: () => number | null;
  openFile: (path: string) => void;
  /** The names of the kernels installed on the server, for the run form. */
  kernels: () => string[];
}

function Section(props: { title: string; children: React.ReactNode }): JSX.Element {
  return (
    <section className="jp-mlops-section">
      <h3>{props.title}</h3>
      {props.children}
    </section>
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
        <div className="jp-mlops-missing">{s.serverMissing}</div>
      </div>
    );
  }
  if (!s.notebook) {
    return (
      <div className="jp-mlops-sidebar">
        <p className="jp-mlops-empty">Open a notebook to see its pipeline.</p>
      </div>
    );
  }
  const a = s.analysis;
  const running = !!s.run && !['succeeded', 'failed', 'cancelled', 'interrupted'].includes(s.run.status);
  const stepStatus: Record<string, string> = {};
  s.run?.steps.forEach(step => (stepStatus[step.name] = step.status));
  return (
    <div className="jp-mlops-sidebar">
      <header className="jp-mlops-title">
        {a ? `Pipeline ${a.pipeline.name}` : 'Pipeline'}
        <button className="jp-mlops-link jp-mlops-refresh" onClick={() => void model.refresh()} title="Analyse again">
          ↻
        </button>
      </header>
      {s.busy && <div className="jp-mlops-busy">{s.busy}…</div>}
      {s.notice && <div className="jp-mlops-notice">{s.notice}</div>}
      {s.error && (
        <div className="jp-mlops-error jp-mlops-request-error">
          {s.error.cell !== null && (
            <button className="jp-mlops-link" onClick={() => actions.scrollToCell(s.error!.cell!)}>
              cell {s.error.cell}
            </button>
          )}{' '}
          {s.error.message}
          <Problems problems={s.error.problems.slice(1)} onCell={actions.scrollToCell} />
        </div>
      )}
      <Section title="Mark cells">
        <RoleButtons roles={a?.roles ?? []} activeCell={actions.activeCell()} onRole={actions.setRole} />
      </Section>
      {!a && !s.error && <p className="jp-mlops-empty">Analysing…</p>}
      {a && (
        <>
          {a.stale && <div className="jp-mlops-warning jp-mlops-stale">Exported pipeline: {a.stale}</div>}
          {a.problems.length > 0 && (
            <Section title="Problems">
              <Problems problems={a.problems} onCell={actions.scrollToCell} />
            </Section>
          )}
          <Section title="Steps">
            <StepGraph steps={a.pipeline.steps} status={stepStatus} />
            <Steps analysis={a} onCell={actions.scrollToCell} />
          </Section>
          <Section title="Captured">
            <Captured analysis={a} />
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
            {s.run && <RunProgress run={s.run} />}
          </Section>
          {a.exported && (
            <Section title="Schedule">
              <ScheduleForm
                key={a.pipeline_dir}
                pipeline={a.pipeline.name}
                parameters={a.pipeline.parameters}
                busy={s.busy}
                error={s.scheduleError}
                onSchedule={request => model.createJob(request)}
              />
              <JobList
                jobs={s.jobs}
                scheduler={s.scheduler}
                busy={s.busy}
                onState={(name, action) => void model.setJobState(name, action)}
                onDelete={name => void model.deleteJob(name)}
              />
            </Section>
          )}
          <Section title="History">
            <RunHistory runs={s.runs} details={id => model.runDetails(id)} onOpen={actions.openFile} />
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
