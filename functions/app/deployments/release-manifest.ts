import { createHash } from 'node:crypto';
import {
  canonicalManifestJson,
  ReleaseManifest,
  ReleasePath,
  ReleaseSummary,
  type ReleaseFile,
} from '../../../schemas/deployments.js';
import type { RobotModel } from '../../../schemas/robot-id.js';

/**
 * Releases as values (issue 12): a folder's files, hashed, become a ReleaseManifest (schemas/deployments.ts); the
 * manifest is named by the SHA-256 of its canonical JSON. Pure: the release CLI walks and hashes, the artifact stores
 * keep the bytes; both share these rules so a manifest means the same thing wherever it was built.
 *
 * INVARIANTS
 * - A built manifest passes ReleaseManifest: files sorted by path (code-unit order, the order the schema checks),
 *   each path once, every path a ReleasePath, totalBytes the sum of the sizes.
 * - Modes are normalised as git does (0o755 if the owner may execute, else 0o644): the same tree gives the same
 *   manifest from any checkout, whatever the umask of the machine that built it.
 * - Two manifests have the same content when they differ at most in createdAt: releasing the same tree again under
 *   the same version is a no-op, never a conflict.
 */

/** One regular file of the tree, as the walker found and hashed it. */
export interface HashedFile {
  /** Relative, `/`-separated. */
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  /** The file's st_mode (any bits; only the owner's execute bit is kept). */
  readonly mode: number;
}

/** A tree that cannot be a release; the message names the path and the problem. */
export class ReleaseManifestError extends Error {
  override readonly name = 'ReleaseManifestError';
}

export function normaliseMode(mode: number): number {
  return mode & 0o100 ? 0o755 : 0o644;
}

/** Byte order of the UTF-16 code units: what ReleaseManifest's `>=` check compares. */
function byPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

export function buildReleaseManifest(input: {
  readonly version: string;
  readonly model?: RobotModel | undefined;
  readonly createdAt: string;
  readonly files: readonly HashedFile[];
}): ReleaseManifest {
  const files: ReleaseFile[] = [];
  for (const file of [...input.files].sort(byPath)) {
    const path = ReleasePath.safeParse(file.path);
    if (!path.success) throw new ReleaseManifestError(`${JSON.stringify(file.path)}: ${path.error.issues[0]?.message ?? 'not a release path'}`);
    const previous = files.at(-1);
    if (previous && previous.path === file.path) throw new ReleaseManifestError(`${file.path}: listed twice`);
    files.push({ path: file.path, sha256: file.sha256, size: file.size, mode: normaliseMode(file.mode) });
  }
  const candidate = {
    format: 1 as const,
    version: input.version,
    ...(input.model ? { model: input.model } : {}),
    createdAt: input.createdAt,
    files,
    totalBytes: files.reduce((sum, f) => sum + f.size, 0),
  };
  const parsed = ReleaseManifest.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ReleaseManifestError(`${issue?.path.map(String).join('.') || '(manifest)'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** The manifest's bytes as stored, and its name in the store. */
export function manifestObject(manifest: ReleaseManifest): { readonly bytes: Buffer; readonly sha256: string } {
  const bytes = Buffer.from(canonicalManifestJson(manifest), 'utf8');
  return { bytes, sha256: sha256Hex(bytes) };
}

export function manifestSha256(manifest: ReleaseManifest): string {
  return manifestObject(manifest).sha256;
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The store's index entry of a release (`releases/<version>.json`). */
export function releaseSummary(manifest: ReleaseManifest): ReleaseSummary {
  return ReleaseSummary.parse({
    version: manifest.version,
    ...(manifest.model ? { model: manifest.model } : {}),
    manifestSha256: manifestSha256(manifest),
    fileCount: manifest.files.length,
    totalBytes: manifest.totalBytes,
    createdAt: manifest.createdAt,
  });
}

/** Whether two manifests describe the same release (createdAt aside). */
export function sameReleaseContent(a: ReleaseManifest, b: ReleaseManifest): boolean {
  const content = (m: ReleaseManifest) => canonicalManifestJson({ ...m, createdAt: '1970-01-01T00:00:00.000Z' });
  return content(a) === content(b);
}

/** The distinct objects a manifest's files name, in path order. */
export function objectsOf(manifest: ReleaseManifest): string[] {
  return [...new Set(manifest.files.map((f) => f.sha256))];
}

/** Reads a stored manifest back: the bytes must hash to the name they are stored under and parse as a manifest. */
export function parseStoredManifest(bytes: Uint8Array, expectedSha256: string): ReleaseManifest {
  const actual = sha256Hex(bytes);
  if (actual !== expectedSha256) throw new ReleaseManifestError(`the stored manifest ${expectedSha256} hashes to ${actual}: the store is damaged`);
  const manifest = ReleaseManifest.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
  if (canonicalManifestJson(manifest) !== Buffer.from(bytes).toString('utf8')) {
    throw new ReleaseManifestError(`the stored manifest ${expectedSha256} is not in canonical form`);
  }
  return manifest;
}
