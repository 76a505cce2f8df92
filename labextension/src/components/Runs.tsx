import * as React from 'react';

import { IParameter, IRunStatus, IStepState } from '../types';
import { changedValues, ParameterInputs } from './Parameters';
import { CellLink, ICellLinks } from './Pipeline';

export function seconds(value: number | null | undefined): string {
  return value === null || value === undefined ? '' : `${value.toFixed(1)} s`;
}

/** Parameter inputs, the kernel to run in, Export and Run buttons. */
export function RunControls(props: {
  parameters: IParameter[];
  /** The pipeline's own kernel, and those installed on the server. */
  kernel: string;
  kernels: string[];
  busy: string | null;
  running: boolean;
  onExport: () => void;
  onRun: (values: Record<string, string>, kernel?: string) => void;
  onCancel: () => void;
}): JSX.Element {
  const [values, setValues] = React.useState<Record<string, string>>({});
  const [kernel, setKernel] = React.useState<string>('');
  const changed = changedValues(props.parameters, values);
  return (
    <div className="jp-mlops-run-controls">
      <ParameterInputs parameters={props.parameters} values={values} onChange={setValues} label="parameter" />
      {props.kernels.length > 1 && (
        <label className="jp-mlops-kernel">
          Kernel{' '}
          <select aria-label="kernel" value={kernel} onChange={e => setKernel(e.target.value)}>
            <option value="">{`the pipeline's (${props.kernel})`}</option>
            {props.kernels
              .filter(name => name !== props.kernel)
              .map(name => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
          </select>
        </label>
      )}
      <p className="jp-mlops-hint jp-mlops-run-note">
        Run saves the notebook and exports the pipeline again first, so that it runs what the notebook says.
      </p>
      <div className="jp-mlops-buttons">
        <button className="jp-mlops-export jp-mod-styled" disabled={!!props.busy} onClick={props.onExport}>
          Export
        </button>
        <button
          className="jp-mlops-run jp-mod-styled jp-mod-accept"
          disabled={!!props.busy || props.running}
          onClick={() => props.onRun(changed, kernel || undefined)}
        >
          Run
        </button>
        {props.running && (
          <button className="jp-mlops-cancel jp-mod-styled jp-mod-warn" onClick={props.onCancel}>
            Cancel
          </button>
        )}
      </div>
    </div>
  );
}

/** Where a running step is, in the author's cells: `cell 3 of 4 (notebook cell 26)`, a
 * link to the notebook's cell (run.results.StepResult.where). */
function StepWhere(props: { step: IStepState; links: ICellLinks }): JSX.Element | null {
  const { step } = props;
  if (step.status !== 'running') {
    return null;
  }
  if (step.cell == null || step.cells == null) {
    return step.cell_index !== null && step.cell_total ? <> (cell {step.cell_index} of {step.cell_total})</> : null;
  }
  if (step.source_cell == null) {
    return (
      <>
        {' '}
        (between its cells: cell {step.cell} of {step.cells} ran last)
      </>
    );
  }
  return (
    <>
      {' '}
      (cell {step.cell} of {step.cells}: notebook <CellLink cell={step.source_cell} links={props.links} />)
    </>
  );
}

/** Per-step progress of the current run; a failed step links to the cell it failed in. */
export function RunProgress(props: { run: IRunStatus; links: ICellLinks }): JSX.Element {
  const { run } = props;
  return (
    <div className="jp-mlops-progress" data-run={run.run_id} data-status={run.status}>
      <div>
        Run <code>{run.run_id}</code>: <b className={`jp-mlops-status-${run.status}`}>{run.status}</b>
      </div>
      <ul>
        {run.steps.map(step => (
          <li key={step.name} className={`jp-mlops-status-${step.status}`}>
            {step.name}: {step.status}
            <StepWhere step={step} links={props.links} />
            {step.cached_from ? ' (cached)' : ''}
            {step.duration !== null ? ` ${seconds(step.duration)}` : ''}
            {step.error && (
              <div className="jp-mlops-error">
                {step.error_cell != null && (
                  <>
                    <CellLink cell={step.error_cell} links={props.links} />:{' '}
                  </>
                )}
                {step.error}
              </div>
            )}
            {(step.warnings ?? []).map(warning => (
              <div key={warning} className="jp-mlops-warning">
                {warning}
              </div>
            ))}
          </li>
        ))}
      </ul>
      {run.error && !run.steps.some(s => s.error) && <div className="jp-mlops-error">{run.error}</div>}
    </div>
  );
}
