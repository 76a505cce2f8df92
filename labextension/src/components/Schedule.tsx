import * as React from 'react';

import { IJob, IJobRequest, IParameter, ISlot } from '../types';
import { changedValues, ParameterInputs } from './Parameters';

/** The browser's time zone, the form's default for a cron schedule. */
function browserZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** Epoch seconds as local date and time. */
export function localTime(seconds: number): string {
  return new Date(seconds * 1000).toLocaleString();
}

export function Field(props: { label: string; children: React.ReactNode }): JSX.Element {
  return (
    <label className="jp-mlops-field">
      <span>{props.label}</span>
      {props.children}
    </label>
  );
}

/** A labelled text input; `aria` names it for screen readers (and tests). */
export function TextField(props: {
  label: string;
  aria: string;
  value: string;
  onChange: (value: string) => void;
  placeholder?: string;
}): JSX.Element {
  return (
    <Field label={props.label}>
      <input
        type="text"
        aria-label={props.aria}
        placeholder={props.placeholder}
        value={props.value}
        onChange={e => props.onChange(e.target.value)}
      />
    </Field>
  );
}

/** The schedule form: cron (with its zone) or interval, parameters, alerts, a name. */
export function ScheduleForm(props: {
  pipeline: string;
  parameters: IParameter[];
  busy: string | null;
  error: string | null;
  onSchedule: (request: Omit<IJobRequest, 'pipeline'>) => Promise<boolean>;
}): JSX.Element {
  const [kind, setKind] = React.useState<'every' | 'cron'>('every');
  const [every, setEvery] = React.useState('');
  const [cron, setCron] = React.useState('');
  const [tz, setTz] = React.useState(browserZone);
  const [values, setValues] = React.useState<Record<string, string>>({});
  const [onFailure, setOnFailure] = React.useState('');
  const [webhook, setWebhook] = React.useState('');
  const [name, setName] = React.useState('');
  const submit = async (event: React.FormEvent): Promise<void> => {
    event.preventDefault();
    const made = await props.onSchedule({
      ...(kind === 'cron' ? { cron, tz } : { every }),
      parameters: changedValues(props.parameters, values),
      ...(name.trim() ? { name: name.trim() } : {}),
      ...(onFailure.trim() ? { on_failure: onFailure } : {}),
      ...(webhook.trim() ? { webhook: webhook.trim() } : {})
    });
    if (made) {
      setName('');
    }
  };
  return (
    <form className="jp-mlops-schedule-form" onSubmit={e => void submit(e)}>
      <Field label="Run">
        <select
          aria-label="schedule kind"
          value={kind}
          onChange={e => setKind(e.target.value === 'cron' ? 'cron' : 'every')}
        >
          <option value="every">every (interval)</option>
          <option value="cron">on a cron schedule</option>
        </select>
      </Field>
      {kind === 'every' ? (
        <TextField label="Interval" aria="interval" placeholder="15m, 1h, 1d" value={every} onChange={setEvery} />
      ) : (
        <>
          <TextField label="Cron" aria="cron" placeholder="0 2 * * *" value={cron} onChange={setCron} />
          <TextField label="Time zone" aria="time zone" value={tz} onChange={setTz} />
        </>
      )}
      <ParameterInputs
        parameters={props.parameters}
        values={values}
        onChange={setValues}
        label="schedule parameter"
      />
      <TextField
        label="On failure"
        aria="on failure command"
        placeholder="a shell command (optional)"
        value={onFailure}
        onChange={setOnFailure}
      />
      <TextField
        label="Webhook"
        aria="webhook"
        placeholder="https://… (optional)"
        value={webhook}
        onChange={setWebhook}
      />
      <TextField label="Name" aria="job name" placeholder={props.pipeline} value={name} onChange={setName} />
      <div className="jp-mlops-buttons">
        <button
          type="submit"
          className="jp-mlops-schedule jp-mod-styled jp-mod-accept"
          disabled={!!props.busy}
        >
          Schedule
        </button>
      </div>
      {props.error && <div className="jp-mlops-error jp-mlops-schedule-error">{props.error}</div>}
    </form>
  );
}

const OUTCOME: Record<string, string> = {
  started: '…',
  succeeded: '✓',
  failed: '✗',
  cancelled: '⊘',
  skipped: '↷'
};

function SlotMark(props: { slot: ISlot }): JSX.Element {
  const { slot } = props;
  const run = slot.run_id ? `run ${slot.run_id} ` : '';
  const reason = slot.reason ? `: ${slot.reason}` : '';
  const missed = slot.missed ? ` (catching up ${slot.missed} missed)` : '';
  const alert = slot.alert ? `; alert: ${slot.alert}` : '';
  return (
    <span
      className={`jp-mlops-slot jp-mlops-status-${slot.outcome}`}
      data-outcome={slot.outcome}
      title={`due ${localTime(slot.due)}${missed}: ${run}${slot.outcome}${reason}${alert}`}
    >
      {OUTCOME[slot.outcome] ?? '?'}
    </span>
  );
}

/** One job: its schedule, state, next run, last outcomes, and its buttons. */
function JobRow(props: {
  job: IJob;
  busy: boolean;
  onState: (name: string, action: 'pause' | 'resume') => void;
  onDelete: (name: string) => void;
}): JSX.Element {
  const { job } = props;
  const values = Object.entries(job.parameters).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  const action = job.state === 'active' ? 'pause' : 'resume';
  return (
    <li className="jp-mlops-job" data-job={job.name} data-state={job.state}>
      <div>
        <b>{job.name}</b> <span className="jp-mlops-job-schedule">{job.schedule.text}</span>{' '}
        <span className={`jp-mlops-job-state jp-mlops-state-${job.state}`}>{job.state}</span>
      </div>
      {job.broken && <div className="jp-mlops-error">{job.broken}</div>}
      {values.length > 0 && <div className="jp-mlops-flow">{values.join(' ')}</div>}
      <div className="jp-mlops-job-next" data-next={job.next_run ?? ''}>
        {job.next_run !== null ? `next run ${localTime(job.next_run)}` : 'no next run'}
      </div>
      {job.last_runs.length > 0 && (
        <div className="jp-mlops-job-last">
          last runs:{' '}
          {job.last_runs.map(slot => (
            <SlotMark key={slot.due} slot={slot} />
          ))}
        </div>
      )}
      <div className="jp-mlops-buttons">
        <button
          className={`jp-mlops-job-${action} jp-mod-styled`}
          disabled={props.busy}
          onClick={() => props.onState(job.name, action)}
        >
          {action === 'pause' ? 'Pause' : 'Resume'}
        </button>
        <button
          className="jp-mlops-job-delete jp-mod-styled jp-mod-warn"
          disabled={props.busy}
          onClick={() => props.onDelete(job.name)}
        >
          Delete
        </button>
      </div>
    </li>
  );
}

/** The pipeline's jobs, and a word when no scheduler runs them in this server. */
export function JobList(props: {
  jobs: IJob[];
  scheduler: boolean | null;
  busy: string | null;
  onState: (name: string, action: 'pause' | 'resume') => void;
  onDelete: (name: string) => void;
}): JSX.Element {
  return (
    <div className="jp-mlops-job-list">
      {props.scheduler === false && (
        <div className="jp-mlops-warning jp-mlops-no-scheduler">
          No scheduler runs in this server (JUPYTER_MLOPS_SCHEDULER is off); run{' '}
          <code>jupyter mlops scheduler</code>
        </div>
      )}
      {props.jobs.length ? (
        <ul className="jp-mlops-jobs">
          {props.jobs.map(job => (
            <JobRow
              key={job.name}
              job={job}
              busy={!!props.busy}
              onState={props.onState}
              onDelete={props.onDelete}
            />
          ))}
        </ul>
      ) : (
        <p className="jp-mlops-empty">No jobs yet.</p>
      )}
    </div>
  );
}
