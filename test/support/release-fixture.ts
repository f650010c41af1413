import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { canonicalManifestJson, ReleaseManifest } from '../../schemas/deployments.js';
import type { ArtifactUrls } from '../../agent/installer/fetcher.js';

/**
 * Releases for installer tests without the release CLI: a folder given as { path: content }, its manifest and objects,
 * and a tiny HTTP object store that counts what it served (the differential tests' evidence) and can be told to
 * serve wrong bytes for an object (the hash-mismatch tests).
 */

export interface FixtureRelease {
  readonly manifest: ReleaseManifest;
  readonly manifestSha256: string;
  readonly objects: ReadonlyMap<string, Buffer>;
}

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export function makeRelease(version: string, files: Record<string, string | { content: string; mode: number }>, model?: 'lekiwi' | 'xle'): FixtureRelease {
  const objects = new Map<string, Buffer>();
  const entries = Object.entries(files)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([path, spec]) => {
      const content = Buffer.from(typeof spec === 'string' ? spec : spec.content);
      const sha = sha256(content);
      objects.set(sha, content);
      return { path, sha256: sha, size: content.length, mode: typeof spec === 'string' ? 0o644 : spec.mode };
    });
  const manifest = ReleaseManifest.parse({
    format: 1,
    version,
    ...(model ? { model } : {}),
    createdAt: '2026-12-01T00:00:00.000Z',
    files: entries,
    totalBytes: entries.reduce((sum, f) => sum + f.size, 0),
  });
  const json = Buffer.from(canonicalManifestJson(manifest));
  const manifestSha256 = sha256(json);
  objects.set(manifestSha256, json);
  return { manifest, manifestSha256, objects };
}

export interface ObjectServer extends ArtifactUrls {
  readonly url: string;
  /** Object hashes served (GET 200), in order. */
  readonly served: string[];
  add(release: FixtureRelease): void;
  /** Serve these bytes instead of the object's. */
  corrupt(sha: string, bytes: Buffer): void;
  close(): Promise<void>;
}

export async function startObjectServer(): Promise<ObjectServer> {
  const objects = new Map<string, Buffer>();
  const corrupted = new Map<string, Buffer>();
  const served: string[] = [];
  const server: Server = createServer((request, response) => {
    const sha = /^\/objects\/([0-9a-f]{64})$/.exec(request.url ?? '')?.[1];
    const body = sha === undefined ? undefined : (corrupted.get(sha) ?? objects.get(sha));
    if (!sha || !body) {
      response.writeHead(404).end();
      return;
    }
    served.push(sha);
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    served,
    add: (release) => release.objects.forEach((bytes, sha) => objects.set(sha, bytes)),
    corrupt: (sha, bytes) => void corrupted.set(sha, bytes),
    async urls(shas) {
      const missing = shas.filter((s) => !objects.has(s));
      return { urls: shas.filter((s) => objects.has(s)).map((s) => ({ sha256: s, url: `${url}/objects/${s}` })), missing };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
