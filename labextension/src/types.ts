/**
 * The wire format of the /mlops/ endpoints: mirrors jupyter_mlops.run.report.describe_json,
 * jupyter_mlops.lab.view and jupyter_mlops.run.results (run.json) on the Python side;
 * tests/test_wire.py and the server tests hold them to what the server sends.
 */

/** A pipeline parameter (notebook.params.Parameter). */
export interface IParameter {
  name: string;
  type: string;
  default: unknown;
  help?: string;
  cell?: number | null;
}

/** A value a step hands on (notebook.analysis.Output). */
export interface IOutput {
  name: string;
  role: string;
  required: boolean;
}

/** A step of the pipeline (pipeline.spec.Step). */
export interface IStep {
  name: string;
  notebook: string;
  cells: number[];
  code_sha256: string;
  inputs: Record<string, string>;
  outputs: IOutput[];
  parameters: string[];
  after: string[];
}

/** The pipeline spec as pipeline.yaml holds it (pipeline.spec.PipelineSpec.to_dict). */
export interface IPipeline {
  version: number;
  name: string;
  source: string;
  source_sha256: string;
  workdir: string;
  kernel: Record<string, string>;
  allow_pickle: boolean;
  /** Type names a model file may use beyond the built-in trusted ones (`--trust`). */
  trust: string[];
  /** The protocol the step notebooks and the runtime in their kernel agree on. */
  runtime_protocol: number;
  parameters: IParameter[];
  steps: IStep[];
  edges: [string, string][];
  checks: Record<string, unknown>;
  /** The prepare cells replayed on raw records (only when cells are marked prepare). */
  inference?: IInference;
}

/** pipeline.yaml `inference:` (notebook.inference.InferencePlan.to_dict). */
export interface IInference {
  input: { step: string; variable: string };
  output: string;
  cells: { cell: number; step?: string; code: string }[];
  setup: { cell: number; code: string }[];
  replay: Record<string, string>;
  fitted: Record<string, string>;
  parameters: string[];
  columns: string[];
  code_sha256: string;
}

/** One cell of the notebook: its role and the step it belongs to. */
export interface ICellInfo {
  number: number;
  id: string | null;
  cell_type: string;
  role: string | null;
  step: string | null;
  /** The data names the cell binds or changes in place (what a data/model/metrics mark may
   * name). */
  assigns: string[];
}

/** A problem the analysis found (errors.Problem). */
export interface IProblem {
  message: string;
  cell: number | null;
  severity: string;
}

/** What the notebook's kernel captured (lab.view.captured_summary). */
export interface ICaptured {
  params: Record<string, unknown>;
  data: Record<string, { variable: string; rows: number | null; columns: number }>;
  models: Record<string, { class: string; fitted: unknown }>;
  metrics: Record<string, { value: number; min: number | null; max: number | null }>;
}

/** POST /mlops/analyze. */
export interface IAnalysis {
  pipeline: IPipeline;
  cells: ICellInfo[];
  problems: IProblem[];
  notebook: string;
  pipeline_dir: string;
  exported: boolean;
  /** The cell roles, in the library's order (jupyter_mlops.notebook.roles.ROLES). */
  roles: string[];
  /** Why the exported pipeline no longer matches the notebook, or null. */
  stale: string | null;
  captured: ICaptured;
  /** With no cell marked prepare: the cells that look like preparation. */
  suggested_prepare: number[];
}

/** POST /mlops/export. */
export interface IExportReply {
  pipeline_dir: string;
  steps: string[];
  warnings: IProblem[];
}

/** One step of a run as run.json has it (run.results.StepResult). */
export interface IStepState {
  name: string;
  status: string;
  started: number | null;
  ended: number | null;
  duration: number | null;
  error: string | null;
  /** The step's own code cell that runs or ran last (1-based), of `cells`: the cells of the
   * source notebook that make the step, not its setup or generated cells. */
  cell: number | null;
  cells: number | null;
  /** The source notebook's number of the cell that runs, or that a failed step failed in;
   * null in a generated cell and once done. */
  source_cell: number | null;
  /** A failed step's cell in the source notebook; null when it failed in a generated cell. */
  error_cell: number | null;
  /** While it runs: the cell of the step notebook papermill is on (1-based), of how many. */
  cell_index: number | null;
  cell_total: number | null;
  cached_from: string | null;
  notebook_path: string;
  /** The step's checks that did not simply pass (drift named by column), as the CLI says. */
  warnings?: string[];
}

/** GET /mlops/runs/ID (run.results.RunResult plus the server's view). */
export interface IRunStatus {
  run_id: string;
  status: string;
  steps: IStepState[];
  parameters?: Record<string, unknown>;
  error?: string | null;
  duration?: number | null;
  cancelled?: boolean;
}

/** One line of the run history (lab.view.run_history). */
export interface IRunSummary {
  run_id: string;
  status: string;
  started: number;
  ended: number | null;
  duration: number | null;
  metrics: Record<string, number>;
  parameters: Record<string, unknown>;
  started_by: string | null;
  error: string | null;
  /** The job that started a scheduled run, or null. */
  job: string | null;
}

/** GET /mlops/runs. */
export interface IRunsReply {
  runs: IRunSummary[];
  active: string[];
}

/** One name in two runs (run.compare.Compared). */
export interface ICompared {
  name: string;
  /** The value in run A (null when A has none: see `in_a`). */
  a: unknown;
  b: unknown;
  in_a: boolean;
  in_b: boolean;
  changed: boolean;
  /** For a metric both runs have: B's value minus A's. */
  difference: number | null;
}

/** GET /mlops/runs/A/diff/B (run.compare.RunComparison). */
export interface IRunComparison {
  a: string;
  b: string;
  parameters: ICompared[];
  /** The data files the steps read (`STEP:PATH`), by sha256. */
  files: ICompared[];
  /** The values the steps made (`STEP.NAME`), by sha256. */
  outputs: ICompared[];
  metrics: ICompared[];
}

/** POST /mlops/runs. */
export interface IRunStarted {
  run_id: string;
  pipeline_dir: string;
}

/** When a job runs (jobs.timing.Schedule.to_json): `cron` in `tz`, or every `every`
 * seconds; and `text`, as the CLI says it (`every 15m`, `cron 0 2 * * * (UTC)`). */
export interface IJobSchedule {
  cron?: string;
  tz?: string;
  every?: number;
  text: string;
}

/** One due time of a job and what became of it (jobs.store.Slot.to_json). */
export interface ISlot {
  job: string;
  due: number;
  /** `schedule`, `catch-up` or `manual`. */
  trigger: string;
  claimed: number;
  scheduler: string;
  /** `started`, `skipped`, or how the run ended (`succeeded`, `failed`, `cancelled`). */
  outcome: string;
  run_id: string | null;
  reason: string | null;
  missed: number;
  host: string | null;
  pid: number | null;
  ended: number | null;
  alert: string | null;
  /** Seconds the run started after its due time. */
  late: number;
}

/** A scheduled job (jobs.store.Job.to_json plus jobs.api.job_view). */
export interface IJob {
  name: string;
  /** The pipeline folder, as the contents API spells it. */
  pipeline: string;
  schedule: IJobSchedule;
  parameters: Record<string, unknown>;
  owner: string;
  /** `active`, `paused` or `broken`. */
  state: string;
  on_failure: string | null;
  webhook: string | null;
  /** `failure` or `always`. */
  notify: string;
  alert_if: string[];
  created: number;
  since: number;
  /** Why the job is broken, or null. */
  broken: string | null;
  /** When the job runs next (epoch seconds); null while paused or broken. */
  next_run: number | null;
  /** Its latest slots, newest first. */
  last_runs: ISlot[];
}

/** GET /mlops/jobs. */
export interface IJobsReply {
  jobs: IJob[];
  /** Whether this server runs a scheduler (JUPYTER_MLOPS_SCHEDULER=off keeps it from it). */
  scheduler: boolean;
}

/** POST /mlops/jobs: a schedule is `cron` (with `tz`) or `every`. */
export interface IJobRequest {
  pipeline: string;
  cron?: string;
  tz?: string;
  every?: string;
  /** Values as the user typed them; the server types them as the pipeline says. */
  parameters?: Record<string, string>;
  name?: string;
  on_failure?: string;
  webhook?: string;
  notify?: string;
}

/** What POST /mlops/deploy writes: an Airflow DAG folder or a KFP pipeline YAML, with the
 * CLI's options (`jupyter mlops airflow` / `kfp`); empty strings are left out. */
export interface IDeployOptions {
  output: string;
  job?: string;
  artifacts?: string;
  retries?: number;
  timeout?: number;
  image?: string;
}

/** POST /mlops/deploy. */
export interface IDeployRequest {
  pipeline: string;
  target: string;
  options: IDeployOptions;
}

/** POST /mlops/deploy's answer (lab.deploys.DeployHandler): the files written, relative to
 * the root, the main one first; the lines the CLI prints, the first as the summary. */
export interface IDeployReply {
  target: string;
  path: string;
  files: string[];
  summary: string;
  lines: string[];
  warning: string | null;
}

/** Every 4xx answer. */
export interface IErrorReply {
  error: string;
  cell: number | null;
  problems?: IProblem[];
  /** The request field that holds a refused setting (e.g. parameters). */
  field?: string;
}
