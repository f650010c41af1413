import type { Readable } from 'node:stream';
import type { ReleaseManifest, ReleaseSummary } from '../../../schemas/deployments.js';
import { sameReleaseContent } from './release-manifest.js';

/**
 * The artifact store of releases (issue 12): file objects named by their SHA-256, each release's manifest (an object
 * like any other, named by the hash of its canonical JSON), and an index entry per version. One port, two adapters:
 * S3 in AWS (functions/adapters/s3-artifact-store.ts) and files under the local cloud's state dir
 * (local/artifact-store.ts), which serves presigned-URL stand-ins over the local HTTP gateway.
 *
 * INVARIANTS (both adapters)
 * - An object is visible under a name only with all its bytes, and only if they hash to that name: putObject verifies
 *   while writing and never leaves a partial or wrong object behind (S3 verifies ChecksumSHA256 itself).
 * - A release is visible (`releases/<version>.json`) only once its manifest and every object its files name are in
 *   the store: a robot given a release can always fetch all of it.
 * - A version names one release for good: putRelease of the same content again (createdAt aside) is a no-op that
 *   answers the release already there; other content under an existing version is refused (ReleaseConflictError).
 */
export interface ArtifactStore {
  /** Which of these objects the store has. */
  hasObjects(sha256s: readonly string[]): Promise<Set<string>>;
  /** The size of each of these objects the store has (absent: not stored). */
  objectSizes(sha256s: readonly string[]): Promise<Map<string, number>>;
  /**
   * Stores `size` bytes under their SHA-256. `source`: a file path, bytes, or a stream (not read when the object is
   * already stored). Throws ObjectHashMismatchError when the bytes are not `size` bytes hashing to `sha256`.
   */
  putObject(sha256: string, source: ObjectSource, size: number): Promise<'stored' | 'exists'>;
  /**
   * Stores the manifest and indexes the version. Throws MissingObjectsError when a file's object is not stored,
   * ReleaseConflictError when the version exists with other content.
   */
  putRelease(manifest: ReleaseManifest): Promise<{ readonly summary: ReleaseSummary; readonly created: boolean }>;
  getRelease(version: string): Promise<{ readonly summary: ReleaseSummary; readonly manifest: ReleaseManifest } | null>;
  /** Every release, newest first (createdAt, then version). */
  listReleases(): Promise<ReleaseSummary[]>;
  /** A URL that GETs the object's bytes until `ttlSeconds` from now, for anyone who has it (a robot). */
  presignObject(sha256: string, ttlSeconds: number): Promise<string>;
}

export type ObjectSource = { readonly file: string } | { readonly bytes: Uint8Array } | { readonly stream: Readable };

/** The bytes given for an object are not what its name says (a file changed while it was released, a bad copy). */
export class ObjectHashMismatchError extends Error {
  override readonly name = 'ObjectHashMismatchError';
  constructor(
    readonly expected: { readonly sha256: string; readonly size: number },
    readonly actual: { readonly sha256?: string; readonly size?: number },
  ) {
    super(
      actual.size !== undefined && actual.size !== expected.size
        ? `object ${expected.sha256}: expected ${expected.size} bytes, got ${actual.size}`
        : `object ${expected.sha256}: the bytes hash to ${actual.sha256 ?? 'something else'}`,
    );
  }
}

/** The version is taken by a release with other files (or another model). */
export class ReleaseConflictError extends Error {
  override readonly name = 'ReleaseConflictError';
  constructor(
    readonly version: string,
    readonly existingManifestSha256: string,
  ) {
    super(`release ${version} already exists with other content (manifest ${existingManifestSha256}); give the new release its own version`);
  }
}

/** A release whose files name objects the store does not have. */
export class MissingObjectsError extends Error {
  override readonly name = 'MissingObjectsError';
  constructor(
    readonly version: string,
    readonly missing: readonly string[],
  ) {
    super(`release ${version} names ${missing.length} object(s) the store does not have (first: ${missing[0] ?? '-'}); upload them first`);
  }
}

/** How long a robot's download URLs work: a batch over a slow link fits, a leaked URL soon stops working. */
export const DEFAULT_URL_TTL_SECONDS = 15 * 60;

/**
 * putRelease's answer for a version already stored: the stored release when the content is the same (nothing
 * created), else a ReleaseConflictError naming the version. Both stores answer a race's loser the same way.
 */
export function sameOrConflict(
  manifest: ReleaseManifest,
  existing: { readonly summary: ReleaseSummary; readonly manifest: ReleaseManifest },
): { summary: ReleaseSummary; created: boolean } {
  if (!sameReleaseContent(manifest, existing.manifest)) throw new ReleaseConflictError(manifest.version, existing.summary.manifestSha256);
  return { summary: existing.summary, created: false };
}
