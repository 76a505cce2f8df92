import { post, requestAPI } from './api';
import { IDeployOptions, IDeployReply, IDeployRequest } from './types';

/** The engines the panel deploys to (lab.deploys.TARGETS). */
export type DeployTarget = 'airflow' | 'kfp';

/** Where a deploy writes by default: beside the pipeline folder, as the README's commands do
 * (`-o dags`, `-o kfp/pipeline.yaml`). */
export function defaultOutput(pipelineDir: string, target: DeployTarget): string {
  const slash = pipelineDir.lastIndexOf('/');
  const parent = slash < 0 ? '' : pipelineDir.slice(0, slash + 1);
  return parent + (target === 'airflow' ? 'dags' : 'kfp/pipeline.yaml');
}

/** Write the pipeline's Airflow DAG or KFP pipeline (POST /mlops/deploy). */
export function deployPipeline(
  pipeline: string,
  target: DeployTarget,
  options: IDeployOptions
): Promise<IDeployReply> {
  const request: IDeployRequest = { pipeline, target, options };
  return requestAPI<IDeployReply>('deploy', post(request));
}

/** Save and export the notebook (so that the engine gets what the notebook says), then
 * deploy; null when the export failed (the panel says why). */
export async function exportAndDeploy(
  exportPipeline: () => Promise<{ pipeline_dir: string } | null>,
  target: DeployTarget,
  options: IDeployOptions
): Promise<IDeployReply | null> {
  const exported = await exportPipeline();
  return exported ? deployPipeline(exported.pipeline_dir, target, options) : null;
}
