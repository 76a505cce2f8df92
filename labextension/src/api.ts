import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IErrorReply, IProblem } from './types';

/** An answer of the server extension that is not a success, in one line. */
export class MlopsError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly cell: number | null = null,
    readonly problems: IProblem[] = [],
    readonly serverMissing = false
  ) {
    super(message);
  }
}

const MISSING =
  'The jupyter-mlops server extension is not answering. Enable it with ' +
  '`jupyter server extension enable jupyter_mlops` in the Python environment that runs ' +
  'JupyterLab (it comes with jupyter-mlops), then restart JupyterLab and retry.';

/**
 * Call a /mlops/ endpoint; the one place the sidebar talks to the server.
 * The token and XSRF header are added by ServerConnection.
 */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.baseUrl, 'mlops', endpoint);
  const search = new URLSearchParams(query).toString();
  if (search) {
    url += '?' + search;
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new MlopsError(`Cannot reach the Jupyter server: ${String(error)}`, 0, null, [], true);
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) {
    return data as T;
  }
  const reply = data as Partial<IErrorReply> | null;
  if (reply && typeof reply.error === 'string') {
    throw new MlopsError(reply.error, response.status, reply.cell ?? null, reply.problems ?? []);
  }
  // no JSON error of ours: the route is not there, or the extension failed to load
  throw new MlopsError(`${MISSING} (HTTP ${response.status})`, response.status, null, [], true);
}

/** A JSON POST body. */
export function post(body: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body) };
}
