import { Button } from '@jupyterlab/ui-components';
import * as React from 'react';

import { defaultOutput, DeployTarget } from '../deploy';
import { IDeployOptions, IDeployReply } from '../types';
import { Field, TextField } from './Schedule';

/** The options a target takes, as the form holds them (text, as typed). */
interface IForm {
  output: string;
  job: string;
  artifacts: string;
  retries: string;
  timeout: string;
  image: string;
}

/** The form's text as the request's options: numbers as numbers, blanks left out (the
 * server checks them and says which one it refuses). */
function options(target: DeployTarget, form: IForm): IDeployOptions {
  const number = (text: string, what: string): number | undefined => {
    const value = Number(text);
    if (text.trim() && !Number.isFinite(value)) {
      throw new Error(`${what} must be a number, not "${text}"`);
    }
    return text.trim() ? value : undefined;
  };
  const text = (value: string): string | undefined => value.trim() || undefined;
  const common: IDeployOptions = { output: form.output.trim(), job: text(form.job) };
  return target === 'airflow'
    ? {
        ...common,
        artifacts: text(form.artifacts),
        retries: number(form.retries, 'Retries'),
        timeout: number(form.timeout, 'Timeout')
      }
    : { ...common, image: text(form.image) };
}

/** What was written: the main file as a link that opens it, and the CLI's lines. */
function Written(props: { reply: IDeployReply; onOpen: (path: string) => void }): JSX.Element {
  const { reply } = props;
  return (
    <div className="jp-mlops-deployed" data-path={reply.path}>
      <button
        className="jp-mlops-link jp-mlops-deployed-file"
        title={`Open ${reply.path}`}
        onClick={() => props.onOpen(reply.path)}
      >
        {reply.path}
      </button>
      <ul className="jp-mlops-deployed-lines">
        {reply.lines.map(line => (
          <li key={line}>{line}</li>
        ))}
      </ul>
      {reply.warning && <div className="jp-mlops-warning">{reply.warning}</div>}
    </div>
  );
}

/** Deploy the exported pipeline: an Airflow DAG or a Kubeflow Pipelines YAML, with the
 * options of `jupyter mlops airflow` / `jupyter mlops kfp`. */
export function DeployForm(props: {
  pipelineDir: string;
  /** The names of the pipeline's jobs (`--job NAME`). */
  jobs: string[];
  busy: string | null;
  onDeploy: (target: DeployTarget, options: IDeployOptions) => Promise<IDeployReply | null>;
  onOpen: (path: string) => void;
}): JSX.Element {
  const [target, setTarget] = React.useState<DeployTarget>('airflow');
  const [form, setForm] = React.useState<IForm>({
    output: defaultOutput(props.pipelineDir, 'airflow'),
    job: '',
    artifacts: '',
    retries: '',
    timeout: '',
    image: ''
  });
  const [reply, setReply] = React.useState<IDeployReply | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [working, setWorking] = React.useState(false);
  const set = (key: keyof IForm) => (value: string) => setForm({ ...form, [key]: value });
  const choose = (next: DeployTarget): void => {
    setTarget(next);
    setForm({ ...form, output: defaultOutput(props.pipelineDir, next) });
  };
  const submit = async (): Promise<void> => {
    setWorking(true);
    setError(null);
    setReply(null);
    try {
      setReply(await props.onDeploy(target, options(target, form)));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setWorking(false);
    }
  };
  return (
    <div className="jp-mlops-deploy-form">
      <Field label="Engine">
        <select
          aria-label="deploy target"
          value={target}
          onChange={e => choose(e.target.value === 'kfp' ? 'kfp' : 'airflow')}
        >
          <option value="airflow">Airflow DAG</option>
          <option value="kfp">Kubeflow Pipelines YAML</option>
        </select>
      </Field>
      <TextField
        label={target === 'airflow' ? 'DAGs folder' : 'YAML file'}
        aria="deploy output"
        value={form.output}
        onChange={set('output')}
      />
      {target === 'airflow' ? (
        <>
          <TextField
            label="Artifacts"
            aria="deploy artifacts"
            placeholder="folder or s3://… (optional)"
            value={form.artifacts}
            onChange={set('artifacts')}
          />
          <TextField label="Retries" aria="deploy retries" placeholder="0" value={form.retries} onChange={set('retries')} />
          <TextField
            label="Timeout"
            aria="deploy timeout"
            placeholder="seconds a task (optional)"
            value={form.timeout}
            onChange={set('timeout')}
          />
        </>
      ) : (
        <TextField
          label="Image"
          aria="deploy image"
          placeholder="jupyter-mlops-pipeline:latest"
          value={form.image}
          onChange={set('image')}
        />
      )}
      {props.jobs.length > 0 && (
        <Field label="Job">
          <select aria-label="deploy job" value={form.job} onChange={e => set('job')(e.target.value)}>
            <option value="">none (triggered by hand)</option>
            {props.jobs.map(name => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </Field>
      )}
      <div className="jp-mlops-buttons">
        <Button small className="jp-mlops-deploy" disabled={working || !!props.busy} onClick={() => void submit()}>
          {target === 'airflow' ? 'Write DAG' : 'Write pipeline YAML'}
        </Button>
      </div>
      {error && <div className="jp-mlops-error jp-mlops-deploy-error">{error}</div>}
      {reply && <Written reply={reply} onOpen={props.onOpen} />}
    </div>
  );
}
