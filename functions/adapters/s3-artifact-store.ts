import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ReleaseManifest, ReleaseSummary, ReleaseVersion, Sha256 } from '../../schemas/deployments.js';
import {
  MissingObjectsError,
  ObjectHashMismatchError,
  sameOrConflict,
  type ArtifactStore,
  type ObjectSource,
} from '../app/deployments/artifact-store.js';
import { manifestObject, objectsOf, parseStoredManifest, releaseSummary } from '../app/deployments/release-manifest.js';

/**
 * The artifact store on S3 (issue 12): `objects/<sha256>` (files and manifests) and `releases/<version>.json`
 * (ReleaseSummary) in one private bucket; robots fetch objects through presigned GetObject URLs.
 *
 * INVARIANTS
 * - S3 checks every object: PutObject carries ChecksumSHA256 (the object's name, in base64), and S3 refuses
 *   (BadDigest) bytes that do not hash to it, storing nothing. A single PutObject is atomic: no partial object is
 *   ever visible. (A single PUT takes up to 5 GB: far beyond a file of the robot's software.)
 * - releases/<v>.json is written with `If-None-Match: *`: of two concurrent releases of one version exactly one
 *   creates it; the other compares and either answers the winner's release or is refused (ReleaseConflictError).
 * - The manifest object and every file object are in the bucket before the release's index entry is written.
 */

export interface S3ArtifactStoreOptions {
  readonly client: S3Client;
  readonly bucket: string;
  /** HeadObject calls in flight at once (hasObjects over a large release). */
  readonly concurrency?: number;
}

export class S3ArtifactStore implements ArtifactStore {
  private readonly concurrency: number;

  constructor(private readonly options: S3ArtifactStoreOptions) {
    this.concurrency = options.concurrency ?? 16;
  }

  async objectSizes(sha256s: readonly string[]): Promise<Map<string, number>> {
    const wanted = [...new Set(sha256s)].filter((sha) => Sha256.safeParse(sha).success);
    const sizes = new Map<string, number>();
    let next = 0;
    const worker = async () => {
      while (next < wanted.length) {
        const sha = wanted[next++] as string;
        const size = await this.headSize(objectKey(sha));
        if (size !== undefined) sizes.set(sha, size);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, wanted.length) }, worker));
    return sizes;
  }

  async hasObjects(sha256s: readonly string[]): Promise<Set<string>> {
    return new Set((await this.objectSizes(sha256s)).keys());
  }

  async putObject(sha256: string, source: ObjectSource, size: number): Promise<'stored' | 'exists'> {
    Sha256.parse(sha256);
    if ((await this.headSize(objectKey(sha256))) !== undefined) return 'exists';
    try {
      await this.options.client.send(
        new PutObjectCommand({
          Bucket: this.options.bucket,
          Key: objectKey(sha256),
          Body: bodyOf(source),
          ContentLength: size,
          ChecksumSHA256: Buffer.from(sha256, 'hex').toString('base64'),
          ContentType: 'application/octet-stream',
        }),
      );
    } catch (error) {
      // S3: the bytes do not hash to ChecksumSHA256 (BadDigest, InvalidRequest naming the checksum), or their length
      // is not ContentLength (IncompleteBody). Nothing was stored.
      if (error instanceof S3ServiceException && ['BadDigest', 'IncompleteBody'].includes(error.name)) {
        throw new ObjectHashMismatchError({ sha256, size }, {});
      }
      throw error;
    }
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
    try {
      await this.options.client.send(
        new PutObjectCommand({
          Bucket: this.options.bucket,
          Key: releaseKey(manifest.version),
          Body: `${JSON.stringify(summary, null, 2)}\n`,
          ContentType: 'application/json',
          IfNoneMatch: '*',
        }),
      );
    } catch (error) {
      // 412: the version was created since we looked; 409: a concurrent conditional write is in progress.
      if (!(error instanceof S3ServiceException) || ![409, 412].includes(error.$metadata.httpStatusCode ?? 0)) throw error;
      const winner = await this.getRelease(manifest.version);
      if (!winner) throw error;
      return sameOrConflict(manifest, winner);
    }
    return { summary, created: true };
  }

  async getRelease(version: string): Promise<{ summary: ReleaseSummary; manifest: ReleaseManifest } | null> {
    if (!ReleaseVersion.safeParse(version).success) return null;
    const text = await this.getText(releaseKey(version));
    if (text === undefined) return null;
    const summary = ReleaseSummary.parse(JSON.parse(text));
    const bytes = await this.getBytes(objectKey(summary.manifestSha256));
    if (bytes === undefined) throw new Error(`release ${version}: its manifest object ${summary.manifestSha256} is missing from the bucket`);
    return { summary, manifest: parseStoredManifest(bytes, summary.manifestSha256) };
  }

  async listReleases(): Promise<ReleaseSummary[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.options.client.send(
        new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: 'releases/', ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const item of page.Contents ?? []) if (item.Key?.endsWith('.json')) keys.push(item.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const summaries: ReleaseSummary[] = [];
    for (const key of keys) {
      const text = await this.getText(key);
      if (text !== undefined) summaries.push(ReleaseSummary.parse(JSON.parse(text)));
    }
    return summaries.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || (a.version < b.version ? 1 : a.version > b.version ? -1 : 0));
  }

  async presignObject(sha256: string, ttlSeconds: number): Promise<string> {
    Sha256.parse(sha256);
    return getSignedUrl(this.options.client, new GetObjectCommand({ Bucket: this.options.bucket, Key: objectKey(sha256) }), {
      expiresIn: Math.max(1, Math.floor(ttlSeconds)),
    });
  }

  private async headSize(key: string): Promise<number | undefined> {
    try {
      const head = await this.options.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async getBytes(key: string): Promise<Uint8Array | undefined> {
    try {
      const object = await this.options.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key }));
      return object.Body ? await object.Body.transformToByteArray() : new Uint8Array();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async getText(key: string): Promise<string | undefined> {
    const bytes = await this.getBytes(key);
    return bytes === undefined ? undefined : Buffer.from(bytes).toString('utf8');
  }
}

export const objectKey = (sha256: string) => `objects/${sha256}`;
export const releaseKey = (version: string) => `releases/${version}.json`;

function bodyOf(source: ObjectSource): Readable | Uint8Array {
  if ('file' in source) return createReadStream(source.file);
  if ('bytes' in source) return source.bytes;
  return source.stream;
}

function isNotFound(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NotFound' || error.name === 'NoSuchKey' || error.$metadata.httpStatusCode === 404);
}
