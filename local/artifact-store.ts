import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { ReleaseManifest, ReleaseSummary, ReleaseVersion, Sha256 } from '../schemas/deployments.js';
import {
  MissingObjectsError,
  ObjectHashMismatchError,
  sameOrConflict,
  type ArtifactStore,
  type ObjectSource,
} from '../functions/app/deployments/artifact-store.js';
import { manifestObject, objectsOf, parseStoredManifest, releaseSummary } from '../functions/app/deployments/release-manifest.js';
import type { PlainResponse } from './http-gateway.js';

/**
 * The local cloud's artifact store (issue 12): S3's part, as files under the state dir —
 *
 *   artifacts/objects/<aa>/<sha256>   file objects and manifests, by hash (aa: the hash's first two digits)
 *   artifacts/releases/<version>.json ReleaseSummary
 *   artifacts/tmp/                    writes in progress (same file system, so a rename publishes them)
 *   artifacts/url-secret              the key of the presigned-URL stand-ins (per state dir, 0600)
 *
 * and `GET /artifacts/objects/<sha>?expires=<epoch s>&signature=<hex>` on the HTTP gateway, a presigned URL that keeps
 * S3's promises: it works until `expires` for anyone who has it, a forged or altered one and an expired one are 403
 * (the message says which), an unknown object is 404, the body streams with its Content-Length.
 *
 * INVARIANTS
 * - A file appears under objects/ or releases/ only complete: written to tmp/, fsynced, renamed (objects) or linked
 *   without overwrite (releases), then the directory fsynced. A crash leaves at most litter in tmp/, cleared at open.
 * - An object's bytes hash to its name: the hash is computed while writing, and a mismatch deletes the temp file.
 * - releases/<v>.json is created at most once (link fails if it exists), so two concurrent releases of one version
 *   cannot both win: the loser compares and either answers the winner's release or is refused.
 * - The release CLI (another process) and the running local cloud may use the store at once: every write is one
 *   rename or link, which the file system makes atomic.
 * - The signature covers the object and the expiry (HMAC-SHA256 over `<sha>\n<expires>`): neither can be changed, and
 *   a URL signed for one object never fetches another.
 */

export interface LocalArtifactStoreOptions {
  /** `<state dir>/artifacts`. */
  readonly root: string;
  /** Where the HTTP gateway is (`http://localhost:3000`), for presigned URLs; read when a URL is made. */
  readonly baseUrl?: string | (() => string);
  readonly now?: () => Date;
}

export const ARTIFACT_OBJECT_PATH_PREFIX = '/artifacts/objects/';

export class LocalArtifactStore implements ArtifactStore {
  private constructor(
    private readonly root: string,
    private readonly secret: Buffer,
    private readonly options: LocalArtifactStoreOptions,
  ) {}

  /** Opens (creating on first use) the store at `root`, clearing writes a crash left in tmp/. */
  static async open(options: LocalArtifactStoreOptions): Promise<LocalArtifactStore> {
    const root = options.root;
    await mkdir(join(root, 'objects'), { recursive: true });
    await mkdir(join(root, 'releases'), { recursive: true });
    await mkdir(join(root, 'tmp'), { recursive: true });
    // Litter of a crashed writer. A write in progress in another process is recent; leave anything under an hour.
    for (const name of await readdir(join(root, 'tmp'))) {
      const path = join(root, 'tmp', name);
      const info = await stat(path).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > 3_600_000) await rm(path, { force: true });
    }
    return new LocalArtifactStore(root, await openOrCreateSecret(join(root, 'url-secret')), options);
  }

  objectFile(sha256: string): string {
    return join(this.root, 'objects', sha256.slice(0, 2), sha256);
  }

  async objectSizes(sha256s: readonly string[]): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    for (const sha of new Set(sha256s)) {
      if (!Sha256.safeParse(sha).success) continue;
      const info = await stat(this.objectFile(sha)).catch(() => undefined);
      if (info?.isFile()) sizes.set(sha, info.size);
    }
    return sizes;
  }

  async hasObjects(sha256s: readonly string[]): Promise<Set<string>> {
    return new Set((await this.objectSizes(sha256s)).keys());
  }

  async putObject(sha256: string, source: ObjectSource, size: number): Promise<'stored' | 'exists'> {
    Sha256.parse(sha256);
    const target = this.objectFile(sha256);
    if (await exists(target)) return 'exists';
    const temp = join(this.root, 'tmp', `${sha256}.${randomUUID()}`);
    const hash = createHash('sha256');
    let written = 0;
    const handle = await open(temp, 'wx', 0o644);
    try {
      for await (const chunk of readableOf(source)) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
        hash.update(bytes);
        written += bytes.length;
        // More than announced: stop reading (a growing file, a wrong size); the check below refuses it.
        if (written > size) break;
        await handle.write(bytes);
      }
      const actual = hash.digest('hex');
      if (written !== size || actual !== sha256) throw new ObjectHashMismatchError({ sha256, size }, { sha256: actual, size: written });
      await handle.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw error;
    }
    await handle.close();
    await mkdir(dirname(target), { recursive: true });
    await rename(temp, target); // the same bytes under the same name: a concurrent writer's rename is harmless
    await syncDirectory(dirname(target));
    return 'stored';
  }

  async putRelease(input: ReleaseManifest): Promise<{ summary: ReleaseSummary; created: boolean }> {
    const manifest = ReleaseManifest.parse(input);
    const existing = await this.getRelease(manifest.version);
    if (existing) return sameOrConflict(manifest, existing);
    const have = await this.hasObjects(objectsOf(manifest));
    const missing = objectsOf(manifest).filter((sha) => !have.has(sha));
    if (missing.length > 0) throw new MissingObjectsError(manifest.version, missing);
    const stored = manifestObject(manifest);
    await this.putObject(stored.sha256, { bytes: stored.bytes }, stored.bytes.length);
    const summary = releaseSummary(manifest);
    const target = this.releaseFile(manifest.version);
    const temp = join(this.root, 'tmp', `release.${randomUUID()}`);
    await writeDurably(temp, `${JSON.stringify(summary, null, 2)}\n`);
    try {
      await link(temp, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const winner = await this.getRelease(manifest.version);
      if (!winner) throw error;
      return sameOrConflict(manifest, winner);
    } finally {
      await unlink(temp).catch(() => undefined);
    }
    await syncDirectory(dirname(target));
    return { summary, created: true };
  }

  async getRelease(version: string): Promise<{ summary: ReleaseSummary; manifest: ReleaseManifest } | null> {
    if (!ReleaseVersion.safeParse(version).success) return null;
    const text = await readFile(this.releaseFile(version), 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (text === undefined) return null;
    const summary = ReleaseSummary.parse(JSON.parse(text));
    const manifest = parseStoredManifest(await readFile(this.objectFile(summary.manifestSha256)), summary.manifestSha256);
    return { summary, manifest };
  }

  async listReleases(): Promise<ReleaseSummary[]> {
    const summaries: ReleaseSummary[] = [];
    for (const name of await readdir(join(this.root, 'releases'))) {
      if (!name.endsWith('.json')) continue;
      summaries.push(ReleaseSummary.parse(JSON.parse(await readFile(join(this.root, 'releases', name), 'utf8'))));
    }
    return summaries.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || (a.version < b.version ? 1 : a.version > b.version ? -1 : 0));
  }

  async presignObject(sha256: string, ttlSeconds: number): Promise<string> {
    Sha256.parse(sha256);
    const base = typeof this.options.baseUrl === 'function' ? this.options.baseUrl() : this.options.baseUrl;
    if (!base) throw new Error('the local artifact store has no base URL: it presigns only inside the local cloud');
    const expires = Math.floor(this.now().getTime() / 1000) + Math.max(1, Math.floor(ttlSeconds));
    return `${base.replace(/\/+$/, '')}${ARTIFACT_OBJECT_PATH_PREFIX}${sha256}?expires=${expires}&signature=${this.sign(sha256, expires)}`;
  }

  /** The gateway's handler of `GET /artifacts/objects/<sha>?expires=…&signature=…`. */
  async serve(request: Pick<IncomingMessage, 'url' | 'method'>): Promise<PlainResponse> {
    const url = new URL(request.url ?? '/', 'http://local');
    const sha = url.pathname.slice(ARTIFACT_OBJECT_PATH_PREFIX.length);
    const expiresText = url.searchParams.get('expires');
    const signature = url.searchParams.get('signature');
    if (request.method !== 'GET') return refuse(405, 'MethodNotAllowed', 'only GET: a presigned URL is signed for GetObject');
    if (expiresText === null || signature === null) return refuse(403, 'AccessDenied', 'not a presigned URL: expires and signature are required');
    const expires = /^\d{1,12}$/.test(expiresText) ? Number(expiresText) : Number.NaN;
    if (!Sha256.safeParse(sha).success || !Number.isFinite(expires) || !this.verify(sha, expires, signature)) {
      return refuse(403, 'SignatureDoesNotMatch', 'the signature does not match the object and expiry: the URL is forged or was altered');
    }
    const now = Math.floor(this.now().getTime() / 1000);
    if (now >= expires) return refuse(403, 'AccessDenied', `the URL expired at ${new Date(expires * 1000).toISOString()}: ask for a new one`);
    const file = this.objectFile(sha);
    // Opened before the answer is written, so the length sent is the length of the file streamed.
    const handle = await open(file, 'r').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (!handle) return refuse(404, 'NoSuchKey', `the store has no object ${sha}`);
    const { size } = await handle.stat();
    return {
      statusCode: 200,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(size),
        etag: `"${sha}"`,
        'cache-control': 'private, max-age=0',
      },
      body: handle.createReadStream(),
    };
  }

  private releaseFile(version: string): string {
    return join(this.root, 'releases', `${ReleaseVersion.parse(version)}.json`);
  }

  private sign(sha256: string, expires: number): string {
    return createHmac('sha256', this.secret).update(`${sha256}\n${expires}`).digest('hex');
  }

  private verify(sha256: string, expires: number, signature: string): boolean {
    if (!/^[0-9a-f]{64}$/.test(signature)) return false;
    return timingSafeEqual(Buffer.from(this.sign(sha256, expires), 'hex'), Buffer.from(signature, 'hex'));
  }

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }
}

function refuse(statusCode: number, code: string, message: string): PlainResponse {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code, message }) };
}

function readableOf(source: ObjectSource): Readable {
  if ('file' in source) return createReadStream(source.file);
  if ('bytes' in source) return Readable.from([Buffer.from(source.bytes)]);
  return source.stream;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function writeDurably(path: string, text: string, mode = 0o644): Promise<void> {
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The URL key: made once per state dir (so URLs given out survive a restart, as S3's do), readable by its owner only. */
async function openOrCreateSecret(path: string): Promise<Buffer> {
  const read = async () => Buffer.from((await readFile(path, 'utf8')).trim(), 'hex');
  try {
    const temp = `${path}.${randomUUID()}`;
    await writeDurably(temp, `${randomBytes(32).toString('hex')}\n`, 0o600);
    try {
      await link(temp, path); // two processes opening a new store at once agree on one key
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const secret = await read();
  if (secret.length !== 32) throw new Error(`${path} is damaged (not 32 hex bytes): delete it (URLs given out so far stop working)`);
  return secret;
}
