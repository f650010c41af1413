import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import {
  ARTIFACT_COMMANDS,
  ArtifactUrlReply,
  artifactTopics,
  MAX_OBJECTS_PER_URL_REQUEST,
  type ArtifactUrlRequest,
  type ReleaseFile,
} from '../../schemas/deployments.js';
import { backoffDelay } from '../core/backoff.js';
import type { Link } from '../adapters/mqtt-link.js';
import type { Logger } from '../adapters/json-log.js';
import { HashMismatchError, type ObjectCache } from './object-cache.js';
import { InstallError } from './install-error.js';

/**
 * Downloads the objects a release needs and the cache lacks. Where they come from is an `ArtifactUrls` source: on a
 * robot, the cloud's short-lived URLs (`CloudArtifactUrls`: an ArtifactUrlRequest on
 * `dt/heartbeat/<thing>/artifacts/request`, the reply as the `artifact-urls` command); bodies are fetched with Node's
 * fetch and streamed into the cache, which verifies each hash before the object becomes visible.
 *
 * INVARIANTS
 * - An object enters the cache only with its hash verified (ObjectCache.write); a mismatch fails the fetch with
 *   HASH_MISMATCH naming the file, and nothing of it stays.
 * - Transient failures (network errors, HTTP 408/429/5xx, a URL that expired: 403) are retried with exponential
 *   backoff and full jitter, each retry with fresh URLs, up to `attempts`; then FETCH_FAILED names the file. An
 *   object the store does not have fails at once (FETCH_FAILED).
 * - At most `concurrency` downloads run at once.
 */

export interface ObjectUrl {
  readonly sha256: string;
  readonly url: string;
}

export interface ArtifactUrls {
  /** URLs for up to MAX_OBJECTS_PER_URL_REQUEST objects; `missing` lists those the store does not have. */
  urls(objects: readonly string[]): Promise<{ readonly urls: readonly ObjectUrl[]; readonly missing: readonly string[] }>;
}

export interface FetchResult {
  readonly files: number;
  readonly bytes: number;
}

export interface FetcherOptions {
  readonly cache: ObjectCache;
  readonly source: ArtifactUrls;
  readonly log: Logger;
  readonly attempts?: number;
  readonly concurrency?: number;
  readonly backoff?: { readonly baseMs: number; readonly capMs: number };
  readonly random?: () => number;
  readonly fetch?: typeof fetch;
}

class TransientError extends Error {}

export async function fetchObjects(files: readonly ReleaseFile[], options: FetcherOptions): Promise<FetchResult> {
  const { cache, source, log } = options;
  const attempts = options.attempts ?? 5;
  const backoff = options.backoff ?? { baseMs: 500, capMs: 10_000 };
  const fetchImpl = options.fetch ?? fetch;
  let pending = [...files];
  let files_ = 0;
  let bytes = 0;
  for (let attempt = 0; pending.length > 0; attempt += 1) {
    const failed: { file: ReleaseFile; error: Error }[] = [];
    for (let i = 0; i < pending.length; i += MAX_OBJECTS_PER_URL_REQUEST) {
      const chunk = pending.slice(i, i + MAX_OBJECTS_PER_URL_REQUEST);
      let answer;
      try {
        answer = await source.urls(chunk.map((f) => f.sha256));
      } catch (error) {
        for (const file of chunk) failed.push({ file, error: error as Error });
        continue;
      }
      const missing = chunk.find((f) => answer.missing.includes(f.sha256));
      if (missing) throw new InstallError('FETCH_FAILED', `the artifact store has no object for ${missing.path} (${missing.sha256})`);
      const urlOf = new Map(answer.urls.map((u) => [u.sha256, u.url]));
      await forEachLimited(chunk, options.concurrency ?? 4, async (file) => {
        const url = urlOf.get(file.sha256);
        if (url === undefined) {
          failed.push({ file, error: new TransientError('no URL in the reply') });
          return;
        }
        try {
          const written = await download(fetchImpl, url, file, cache);
          files_ += 1;
          bytes += written;
        } catch (error) {
          if (error instanceof HashMismatchError) {
            throw new InstallError('HASH_MISMATCH', `${file.path}: the download's SHA-256 is ${error.actual}, the manifest says ${file.sha256}`);
          }
          if (error instanceof InstallError) throw error;
          failed.push({ file, error: error as Error });
        }
      });
    }
    if (failed.length === 0) break;
    const first = failed[0]!;
    if (attempt + 1 >= attempts) {
      throw new InstallError('FETCH_FAILED', `${first.file.path}: ${first.error.message} (after ${attempts} attempts)`, { cause: first.error });
    }
    const delay = backoffDelay(attempt, backoff, options.random ?? Math.random);
    log.warn('downloads failed; retrying', { failed: failed.length, example: first.file.path, error: first.error, delayMs: delay });
    await new Promise((resolve) => setTimeout(resolve, delay));
    pending = failed.map((f) => f.file);
  }
  return { files: files_, bytes };
}

async function download(fetchImpl: typeof fetch, url: string, file: ReleaseFile, cache: ObjectCache): Promise<number> {
  let response: Response;
  try {
    response = await fetchImpl(url);
  } catch (error) {
    throw new TransientError(`download failed: ${(error as Error).message}`);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => undefined);
    const status = response.status;
    if (status === 403 || status === 408 || status === 429 || status >= 500) throw new TransientError(`HTTP ${status}`);
    throw new InstallError('FETCH_FAILED', `${file.path}: HTTP ${status} from the artifact store`);
  }
  try {
    return await cache.write(file.sha256, Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>), file.path);
  } catch (error) {
    if (error instanceof HashMismatchError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOSPC') throw new InstallError('DISK_FULL', `${file.path}: no space left on the device`);
    throw new TransientError(`download of ${file.path} broke off: ${(error as Error).message}`);
  }
}

async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item);
    }
  });
  await Promise.all(workers);
}

/**
 * The cloud's URLs: publishes ArtifactUrlRequest, waits for the `artifact-urls` reply with its requestId. Register
 * `onReply` as the agent's handler of ARTIFACT_COMMANDS.urls.
 */
export class CloudArtifactUrls implements ArtifactUrls {
  private readonly waiting = new Map<string, (reply: ArtifactUrlReply) => void>();

  constructor(
    private readonly deps: { readonly link: Link; readonly thingName: string; readonly log: Logger; readonly timeoutMs?: number },
  ) {}

  readonly command = ARTIFACT_COMMANDS.urls;

  onReply = (body: unknown): void => {
    const parsed = ArtifactUrlReply.safeParse(body);
    if (!parsed.success) {
      this.deps.log.warn('artifact-urls reply ignored: not an ArtifactUrlReply', { problem: parsed.error.issues[0]?.message });
      return;
    }
    const resolve = this.waiting.get(parsed.data.requestId);
    if (!resolve) return; // a late answer to a request given up on
    this.waiting.delete(parsed.data.requestId);
    resolve(parsed.data);
  };

  async urls(objects: readonly string[]): Promise<{ urls: readonly ObjectUrl[]; missing: readonly string[] }> {
    const request: ArtifactUrlRequest = { requestId: `art-${randomUUID()}`, objects: [...objects] };
    const timeoutMs = this.deps.timeoutMs ?? 15_000;
    const reply = await new Promise<ArtifactUrlReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(request.requestId);
        reject(new Error(`no artifact-urls reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(request.requestId, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      this.deps.link.publish(artifactTopics.request(this.deps.thingName), JSON.stringify(request), 1).catch((error: unknown) => {
        clearTimeout(timer);
        this.waiting.delete(request.requestId);
        reject(error as Error);
      });
    });
    if ('rejected' in reply) throw new InstallError('FETCH_FAILED', `the cloud refused the download URLs: ${reply.rejected.reason}: ${reply.rejected.message}`);
    return { urls: reply.urls, missing: reply.missing };
  }
}
