import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ReleaseVersion, type ReleaseManifest, type ReleaseSummary } from '../../schemas/deployments.js';
import type { RobotModel } from '../../schemas/robot-id.js';
import { ObjectHashMismatchError, ReleaseConflictError, type ArtifactStore } from '../../functions/app/deployments/artifact-store.js';
import { buildReleaseManifest, sameReleaseContent, type HashedFile } from '../../functions/app/deployments/release-manifest.js';

/**
 * A folder into a release (issue 12, `npm run release`): walk, hash each file as a stream, build the manifest, upload
 * the objects the store lacks, then store the release. Also for tests and benchmarks that release a tree themselves.
 *
 * INVARIANTS
 * - Only regular files and directories: a symlink, socket, FIFO or device is refused, naming it (a link could point
 *   outside the release on the robot, and the manifest has no kind of entry for it: make it in an install script).
 *   Empty directories are not part of a release (the manifest lists files).
 * - A version already taken by other content is refused before anything is uploaded.
 * - Nothing is uploaded that is already stored, and each object once however many files share it.
 * - The release becomes visible only after all its objects are stored (the store's putRelease checks it again).
 * - A file that changes between hashing and upload fails the release, naming the file (the store verifies the hash).
 */

export class ReleaseTreeError extends Error {
  override readonly name = 'ReleaseTreeError';
}

export interface ReleaseProgress {
  readonly phase: 'hashing' | 'uploading';
  readonly files: number;
  readonly totalFiles: number;
  readonly bytes: number;
  readonly totalBytes: number;
}

export interface ReleaseTreeOptions {
  readonly dir: string;
  readonly version: string;
  readonly model?: RobotModel | undefined;
  readonly store: ArtifactStore;
  readonly now?: () => Date;
  /** Files read or uploaded at once. */
  readonly concurrency?: number;
  readonly onProgress?: (progress: ReleaseProgress) => void;
}

export interface ReleaseTreeResult {
  readonly summary: ReleaseSummary;
  readonly manifest: ReleaseManifest;
  /** False: the store already had this version with the same files (nothing changed). */
  readonly created: boolean;
  readonly newObjects: number;
  readonly bytesUploaded: number;
}

export async function releaseTree(options: ReleaseTreeOptions): Promise<ReleaseTreeResult> {
  const version = ReleaseVersion.safeParse(options.version);
  if (!version.success) throw new ReleaseTreeError(`--version ${JSON.stringify(options.version)}: ${version.error.issues[0]?.message ?? 'invalid'}`);
  const info = await lstat(options.dir).catch(() => undefined);
  if (!info) throw new ReleaseTreeError(`${options.dir}: no such folder`);
  if (!info.isDirectory()) throw new ReleaseTreeError(`${options.dir}: not a folder`);
  const concurrency = options.concurrency ?? 4;
  const report = options.onProgress ?? (() => undefined);

  const found = await walk(options.dir);
  const totalBytes = found.reduce((sum, f) => sum + f.size, 0);
  let hashedFiles = 0;
  let hashedBytes = 0;
  const files = await mapLimit(found, concurrency, async (file): Promise<HashedFile & { readonly absolute: string }> => {
    const sha256 = await hashFile(file.absolute);
    hashedFiles += 1;
    hashedBytes += file.size;
    report({ phase: 'hashing', files: hashedFiles, totalFiles: found.length, bytes: hashedBytes, totalBytes });
    return { ...file, sha256 };
  });
  const manifest = buildReleaseManifest({
    version: version.data,
    model: options.model,
    createdAt: (options.now?.() ?? new Date()).toISOString(),
    files,
  });

  // A version taken by other content is refused before anything is uploaded.
  const existing = await options.store.getRelease(manifest.version);
  if (existing && !sameReleaseContent(existing.manifest, manifest)) throw new ReleaseConflictError(manifest.version, existing.summary.manifestSha256);

  // One upload per object the store lacks, from the first file that has it.
  const byObject = new Map<string, (typeof files)[number]>();
  for (const file of files) if (!byObject.has(file.sha256)) byObject.set(file.sha256, file);
  const stored = await options.store.hasObjects([...byObject.keys()]);
  const toUpload = [...byObject.values()].filter((file) => !stored.has(file.sha256));
  const uploadBytes = toUpload.reduce((sum, f) => sum + f.size, 0);
  let uploadedFiles = 0;
  let bytesUploaded = 0;
  await mapLimit(toUpload, concurrency, async (file) => {
    try {
      const outcome = await options.store.putObject(file.sha256, { file: file.absolute }, file.size);
      if (outcome === 'stored') bytesUploaded += file.size;
    } catch (error) {
      if (error instanceof ObjectHashMismatchError) throw new ReleaseTreeError(`${file.path} changed while it was being released (${error.message}); run again`);
      throw error;
    }
    uploadedFiles += 1;
    report({ phase: 'uploading', files: uploadedFiles, totalFiles: toUpload.length, bytes: bytesUploaded, totalBytes: uploadBytes });
  });
  const { summary, created } = await options.store.putRelease(manifest);
  return { summary, manifest, created, newObjects: toUpload.length, bytesUploaded };
}

interface FoundFile {
  readonly path: string;
  readonly absolute: string;
  readonly size: number;
  readonly mode: number;
}

/** Every regular file under `root`, with its `/`-separated path; anything else but a directory is refused. */
async function walk(root: string): Promise<FoundFile[]> {
  const found: FoundFile[] = [];
  const visit = async (relative: string): Promise<void> => {
    const absolute = relative === '' ? root : join(root, relative);
    let entries;
    try {
      entries = await readdir(absolute, { withFileTypes: true });
    } catch (error) {
      throw new ReleaseTreeError(`${absolute}: cannot read the folder (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    for (const entry of entries) {
      const path = relative === '' ? entry.name : `${relative}/${entry.name}`;
      const full = join(root, path);
      if (entry.isDirectory()) await visit(path);
      else if (entry.isFile()) {
        const info = await lstat(full);
        found.push({ path, absolute: full, size: info.size, mode: info.mode });
      } else if (entry.isSymbolicLink()) {
        const target = await readlink(full).catch(() => '?');
        throw new ReleaseTreeError(
          `${path}: a symbolic link (→ ${target}); releases hold regular files only. Copy the file in, or create the link in an install script.`,
        );
      } else {
        const kind = entry.isFIFO() ? 'a FIFO' : entry.isSocket() ? 'a socket' : entry.isBlockDevice() || entry.isCharacterDevice() ? 'a device' : 'not a regular file';
        throw new ReleaseTreeError(`${path}: ${kind}; releases hold regular files only`);
      }
    }
  };
  await visit('');
  return found;
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (error) {
    throw new ReleaseTreeError(`${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  return hash.digest('hex');
}

async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
