import { Button } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IRunComparison, IRunStatus, IRunSummary } from '../types';
import { compact, RunComparison } from './Compare';
import { fmt } from './Pipeline';
import { seconds } from './Runs';

/** A clock and the job's name, on a run a schedule started (an SVG: a clock glyph is missing
 * from many fonts). */
function JobLabel(props: { job: string }): JSX.Element {
  return (
    <span className="jp-mlops-job-label" data-trigger="scheduled" title={`started by job ${props.job}`}>
      <svg viewBox="0 0 16 16" width="10" height="10" aria-hidden="true">
        <circle cx="8" cy="9" r="6" fill="none" stroke="currentColor" strokeWidth="1.6" />
        <path d="M8 5.5V9l2.5 1.5M6 1.5h4" fill="none" stroke="currentColor" strokeWidth="1.6" />
      </svg>{' '}
      {props.job}
    </span>
  );
}

/** How a run started (run.records.RunRecord.started_by): a job, a retraining, or by hand. */
function Trigger(props: { run: IRunSummary }): JSX.Element {
  const by = props.run.started_by ?? '';
  const job = props.run.job ?? (by.startsWith('schedule:') ? by.slice('schedule:'.length) : null);
  if (job) {
    return <JobLabel job={job} />;
  }
  const retrain = by.startsWith('retrain:');
  const manual = !by || by === 'jupyterlab' || by === 'api' || by.startsWith('cli:');
  const text = retrain ? `retrain (${by.slice('retrain:'.length)})` : manual ? 'manual' : by;
  return (
    <span
      className="jp-mlops-job-label"
      data-trigger={retrain ? 'retrain' : manual ? 'manual' : by}
      title={`started by ${by || 'hand'}`}
    >
      {text}
    </span>
  );
}

/** One run: a checkbox, its id (cut to the width, whole in its tooltip), status and
 * duration; then how it started, its parameters on one line, and its metrics, wrapped. */
function RunRow(props: {
  run: IRunSummary;
  selected: boolean;
  onSelect: (on: boolean) => void;
  onToggle: () => void;
}): JSX.Element {
  const { run } = props;
  const parameters = Object.entries(run.parameters)
    .map(([k, v]) => `${k}=${compact(v)}`)
    .join(' ');
  return (
    <>
      <tr>
        <td>
          <input
            type="checkbox"
            className="jp-mlops-run-select"
            aria-label={`select run ${run.run_id}`}
            checked={props.selected}
            onChange={e => props.onSelect(e.target.checked)}
          />
        </td>
        <td className="jp-mlops-run-id">
          <button className="jp-mlops-link" onClick={props.onToggle} title={`${run.run_id}: show the executed notebooks`}>
            {run.run_id}
          </button>
        </td>
        <td className={`jp-mlops-status-${run.status}`} title={run.error ?? run.status}>
          {run.status}
        </td>
        <td>{seconds(run.duration)}</td>
      </tr>
      <tr className="jp-mlops-history-more">
        <td colSpan={4}>
          <Trigger run={run} />
          {parameters && (
            <span className="jp-mlops-run-params" title={parameters}>
              {' '}
              {parameters}
            </span>
          )}
          <span className="jp-mlops-metrics">
            {Object.entries(run.metrics).map(([k, v]) => (
              <span key={k} className="jp-mlops-metric">
                {`${k}=${fmt(v)}`}{' '}
              </span>
            ))}
          </span>
        </td>
      </tr>
    </>
  );
}

/** A run's executed notebooks, each opening in the lab. */
function Notebooks(props: { run: IRunStatus; onOpen: (path: string) => void }): JSX.Element {
  return (
    <tr>
      <td colSpan={4}>
        <ul className="jp-mlops-notebooks">
          {props.run.steps.map(step => (
            <li key={step.name}>
              {step.notebook_path ? (
                <button className="jp-mlops-link" onClick={() => props.onOpen(step.notebook_path)}>
                  {step.name}
                </button>
              ) : (
                step.name
              )}{' '}
              <span className={`jp-mlops-status-${step.status}`}>{step.status}</span>
            </li>
          ))}
        </ul>
      </td>
    </tr>
  );
}

/** The run history: each run two lines, fitting the sidebar's default width; a run opens to
 * its executed notebooks; two runs checked compare side by side. */
export function RunHistory(props: {
  runs: IRunSummary[];
  details: (runId: string) => Promise<IRunStatus | null>;
  compare: (a: string, b: string) => Promise<IRunComparison | null>;
  onOpen: (path: string) => void;
}): JSX.Element {
  const [open, setOpen] = React.useState<IRunStatus | null>(null);
  const [selected, setSelected] = React.useState<string[]>([]);
  const [comparison, setComparison] = React.useState<IRunComparison | null>(null);
  if (!props.runs.length) {
    return <p className="jp-mlops-empty">No runs yet.</p>;
  }
  const toggle = async (runId: string): Promise<void> => {
    setOpen(open?.run_id === runId ? null : await props.details(runId));
  };
  const select = (runId: string, on: boolean): void => {
    // the latest two checked; a third replaces the first
    setSelected(on ? [...selected.filter(id => id !== runId), runId].slice(-2) : selected.filter(id => id !== runId));
  };
  const compare = async (): Promise<void> => {
    // A is the older run: the comparison reads as what changed since
    const [a, b] = props.runs.filter(r => selected.includes(r.run_id)).reverse();
    setComparison(await props.compare(a.run_id, b.run_id));
  };
  const ready = selected.length === 2 && selected.every(id => props.runs.some(r => r.run_id === id));
  return (
    <>
      <table className="jp-mlops-history">
        <colgroup>
          <col className="jp-mlops-col-select" />
          <col />
          <col className="jp-mlops-col-status" />
          <col className="jp-mlops-col-duration" />
        </colgroup>
        {props.runs.map(run => (
          <tbody key={run.run_id} className="jp-mlops-history-row" data-run={run.run_id} data-status={run.status}>
            <RunRow
              run={run}
              selected={selected.includes(run.run_id)}
              onSelect={on => select(run.run_id, on)}
              onToggle={() => void toggle(run.run_id)}
            />
            {open?.run_id === run.run_id && <Notebooks run={open} onOpen={props.onOpen} />}
          </tbody>
        ))}
      </table>
      <div className="jp-mlops-buttons">
        <Button small className="jp-mlops-compare" disabled={!ready} onClick={() => void compare()}>
          Compare
        </Button>
        {!ready && <span className="jp-mlops-hint">Check two runs to compare them.</span>}
      </div>
      {comparison && <RunComparison comparison={comparison} onClose={() => setComparison(null)} />}
    </>
  );
}
