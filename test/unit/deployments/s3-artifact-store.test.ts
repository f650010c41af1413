import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3ArtifactStore } from '../../../functions/adapters/s3-artifact-store.js';
import { MissingObjectsError, ObjectHashMismatchError, ReleaseConflictError } from '../../../functions/app/deployments/artifact-store.js';
import { buildReleaseManifest, manifestObject, releaseSummary, sha256Hex } from '../../../functions/app/deployments/release-manifest.js';

/** The S3 adapter's calls, on a mocked S3 client: keys, checksums, conditional writes, and how S3's answers map. */
const client = new S3Client({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
const s3 = mockClient(client);
const store = new S3ArtifactStore({ client, bucket: 'heartbeat-artifacts-test' });
const notFound = () => new S3ServiceException({ name: 'NotFound', $fault: 'client', $metadata: { httpStatusCode: 404 } });
const body = (text: string | Uint8Array) => ({ transformToByteArray: async () => (typeof text === 'string' ? Buffer.from(text) : text) }) as never;

const A = Buffer.from('alpha\n');
const B = Buffer.from('beta\n');
const manifest = buildReleaseManifest({
  version: '1.2.0',
  model: 'lekiwi',
  createdAt: '2026-12-01T10:00:00.000Z',
  files: [
    { path: 'bin/run', sha256: sha256Hex(A), size: A.length, mode: 0o100755 },
    { path: 'conf/a', sha256: sha256Hex(B), size: B.length, mode: 0o100644 },
  ],
});
const stored = manifestObject(manifest);

/** An S3 holding these keys (HeadObject and GetObject answer from it, PutObject adds to it). */
function bucket(initial: Record<string, Uint8Array | string> = {}) {
  const objects = new Map(Object.entries(initial).map(([key, value]) => [key, Buffer.from(value)]));
  s3.on(HeadObjectCommand).callsFake(async ({ Key }: { Key: string }) => {
    const object = objects.get(Key);
    if (!object) throw notFound();
    return { ContentLength: object.length };
  });
  s3.on(GetObjectCommand).callsFake(async ({ Key }: { Key: string }) => {
    const object = objects.get(Key);
    if (!object) throw new NoSuchKey({ message: 'The specified key does not exist.', $metadata: { httpStatusCode: 404 } });
    return { Body: body(object) };
  });
  s3.on(PutObjectCommand).callsFake(async ({ Key, Body }: { Key: string; Body: string | Uint8Array }) => {
    objects.set(Key, Buffer.from(Body));
    return {};
  });
  return objects;
}

beforeEach(() => s3.reset());

describe('S3ArtifactStore', () => {
  it('puts a missing object under objects/<sha> with its ChecksumSHA256 and length, so S3 verifies it', async () => {
    bucket();
    const sha = sha256Hex(A);
    await expect(store.putObject(sha, { bytes: A }, A.length)).resolves.toBe('stored');
    const put = s3.commandCalls(PutObjectCommand)[0]!.args[0].input;
    expect(put).toMatchObject({
      Bucket: 'heartbeat-artifacts-test',
      Key: `objects/${sha}`,
      ContentLength: A.length,
      ChecksumSHA256: Buffer.from(sha, 'hex').toString('base64'),
    });
  });

  it('uploads nothing for an object already stored', async () => {
    const sha = sha256Hex(A);
    bucket({ [`objects/${sha}`]: A });
    await expect(store.putObject(sha, { bytes: A }, A.length)).resolves.toBe('exists');
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0);
  });

  it("turns S3's BadDigest (bytes that do not hash to the checksum) into ObjectHashMismatchError", async () => {
    bucket();
    s3.on(PutObjectCommand).rejects(new S3ServiceException({ name: 'BadDigest', $fault: 'client', $metadata: { httpStatusCode: 400 } }));
    await expect(store.putObject(sha256Hex(A), { bytes: B }, B.length)).rejects.toBeInstanceOf(ObjectHashMismatchError);
  });

  it('answers which objects it has, with their sizes', async () => {
    bucket({ [`objects/${sha256Hex(A)}`]: A });
    const sizes = await store.objectSizes([sha256Hex(A), sha256Hex(B), sha256Hex(A)]);
    expect([...sizes]).toEqual([[sha256Hex(A), A.length]]);
    expect(s3.commandCalls(HeadObjectCommand)).toHaveLength(2); // each object asked once
  });

  it('refuses a release whose objects are not all stored, writing nothing', async () => {
    bucket({ [`objects/${sha256Hex(A)}`]: A });
    const error = await store.putRelease(manifest).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingObjectsError);
    expect((error as MissingObjectsError).missing).toEqual([sha256Hex(B)]);
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0);
  });

  it('stores the manifest object, then releases/<v>.json only if absent (If-None-Match: *), and reads it back', async () => {
    const objects = bucket({ [`objects/${sha256Hex(A)}`]: A, [`objects/${sha256Hex(B)}`]: B });
    await expect(store.putRelease(manifest)).resolves.toEqual({ summary: releaseSummary(manifest), created: true });
    const puts = s3.commandCalls(PutObjectCommand).map((call) => call.args[0].input);
    expect(puts.map((put) => put.Key)).toEqual([`objects/${stored.sha256}`, 'releases/1.2.0.json']);
    expect(puts[0]).toMatchObject({ ChecksumSHA256: Buffer.from(stored.sha256, 'hex').toString('base64') });
    expect(puts[1]).toMatchObject({ IfNoneMatch: '*', ContentType: 'application/json' });
    expect(Buffer.from(objects.get(`objects/${stored.sha256}`)!).equals(stored.bytes)).toBe(true);

    await expect(store.getRelease('1.2.0')).resolves.toEqual({ summary: releaseSummary(manifest), manifest });
    await expect(store.getRelease('9.9.9')).resolves.toBeNull();
  });

  it('is a no-op for the same files again (a later createdAt), and refuses other content under the version', async () => {
    bucket({ [`objects/${sha256Hex(A)}`]: A, [`objects/${sha256Hex(B)}`]: B });
    await store.putRelease(manifest);
    s3.resetHistory();
    const again = buildReleaseManifest({ ...manifest, createdAt: '2026-12-02T00:00:00.000Z', files: manifest.files });
    await expect(store.putRelease(again)).resolves.toEqual({ summary: releaseSummary(manifest), created: false });
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0);

    const other = buildReleaseManifest({ ...manifest, files: manifest.files.slice(0, 1) });
    await expect(store.putRelease(other)).rejects.toThrow(new ReleaseConflictError('1.2.0', stored.sha256));
    await expect(store.putRelease(other)).rejects.toThrow('release 1.2.0 already exists with other content');
  });

  it('loses a race for the version to the winner: 412 on the conditional write, then compares with what won', async () => {
    const objects = bucket({ [`objects/${sha256Hex(A)}`]: A, [`objects/${sha256Hex(B)}`]: B });
    const rival = buildReleaseManifest({ ...manifest, files: manifest.files.slice(1) });
    const rivalObject = manifestObject(rival);
    s3.on(PutObjectCommand, { Key: 'releases/1.2.0.json' }).callsFake(async () => {
      // Another release of 1.2.0 got there first.
      objects.set(`objects/${rivalObject.sha256}`, Buffer.from(rivalObject.bytes));
      objects.set('releases/1.2.0.json', Buffer.from(JSON.stringify(releaseSummary(rival))));
      throw new S3ServiceException({ name: 'PreconditionFailed', $fault: 'client', $metadata: { httpStatusCode: 412 } });
    });
    await expect(store.putRelease(manifest)).rejects.toBeInstanceOf(ReleaseConflictError);
  });

  it('lists every release, newest first, across pages', async () => {
    const summaries = ['1.0.0', '1.1.0', '0.9.0'].map((version, i) =>
      releaseSummary(buildReleaseManifest({ version, createdAt: `2026-12-0${[2, 3, 1][i]}T00:00:00.000Z`, files: [] })),
    );
    bucket(Object.fromEntries(summaries.map((s) => [`releases/${s.version}.json`, JSON.stringify(s)])));
    s3.on(ListObjectsV2Command, { ContinuationToken: undefined })
      .resolves({ Contents: [{ Key: 'releases/1.0.0.json' }, { Key: 'releases/1.1.0.json' }], IsTruncated: true, NextContinuationToken: 'p2' })
      .on(ListObjectsV2Command, { ContinuationToken: 'p2' })
      .resolves({ Contents: [{ Key: 'releases/0.9.0.json' }], IsTruncated: false });
    expect((await store.listReleases()).map((s) => s.version)).toEqual(['1.1.0', '1.0.0', '0.9.0']);
  });

  it('presigns a GetObject of objects/<sha> for the given time', async () => {
    const sha = sha256Hex(A);
    const url = new URL(await store.presignObject(sha, 900));
    expect(url.hostname).toBe('heartbeat-artifacts-test.s3.eu-west-1.amazonaws.com');
    expect(url.pathname).toBe(`/objects/${sha}`);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    expect(url.searchParams.get('X-Amz-Credential')).toMatch(/^AKIDEXAMPLE\/\d{8}\/eu-west-1\/s3\/aws4_request$/);
  });
});
