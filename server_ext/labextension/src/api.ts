/** The server extension's endpoint (server_ext/valeria_datalake/api.py). */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IBucket {
  bucket: string;
  folder: string;
  writable: boolean;
  /** own: the user's; admin: the platform's shared list; user: added by the user */
  source: 'own' | 'admin' | 'user';
}

export interface IUserBucket {
  bucket: string;
  /** false: in the user's list, but not readable now (hidden from the file browser) */
  readable: boolean;
}

export interface IDatalakeState {
  prefix: string;
  buckets: IBucket[];
  user_buckets: IUserBucket[];
  error: string | null;
}

export interface IAddResult {
  bucket: string;
  added: boolean;
  folder?: string;
  writable?: boolean;
  message?: string;
}

const settings = ServerConnection.makeSettings();

async function call<T>(method: string, path: string, body?: unknown): Promise<T | null> {
  const url = URLExt.join(settings.baseUrl, 'api/valeria/datalake', path);
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
  }
  const response = await ServerConnection.makeRequest(url, init, settings);
  if (!response.ok) {
    throw await ServerConnection.ResponseError.create(response);
  }
  const text = await response.text();
  return text ? (JSON.parse(text) as T) : null;
}

export async function fetchState(): Promise<IDatalakeState> {
  return (await call<IDatalakeState>('GET', '')) as IDatalakeState;
}

export async function addSharedBucket(bucket: string): Promise<IAddResult> {
  return (await call<IAddResult>('POST', 'shared-buckets', { bucket })) as IAddResult;
}

export async function removeSharedBucket(bucket: string): Promise<void> {
  await call('DELETE', URLExt.join('shared-buckets', encodeURIComponent(bucket)));
}

/** The server's message of a failed call (its fixed sentence), else a generic one. */
export function messageOf(error: unknown): string {
  if (error instanceof ServerConnection.ResponseError) {
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}
