import { describe, expect, it } from 'vitest';
import { canonicalManifestJson, ReleaseManifest } from '../../../schemas/deployments.js';
import {
  buildReleaseManifest,
  manifestObject,
  manifestSha256,
  parseStoredManifest,
  releaseSummary,
  ReleaseManifestError,
  sameReleaseContent,
  sha256Hex,
  type HashedFile,
} from '../../../functions/app/deployments/release-manifest.js';

const sha = (text: string) => sha256Hex(text);
const file = (path: string, content: string, mode = 0o100644): HashedFile => ({ path, sha256: sha(content), size: Buffer.byteLength(content), mode });
const AT = '2026-12-01T10:00:00.000Z';

describe('the release manifest builder', () => {
  it('sorts the files by path in code-unit order, keeps every path once, and sums the sizes', () => {
    const manifest = buildReleaseManifest({
      version: '1.4.0',
      model: 'lekiwi',
      createdAt: AT,
      files: [file('z.txt', 'zz'), file('B/a.txt', 'a'), file('a/b.txt', 'bbb'), file('a.txt', ''), file('a/a.txt', 'x')],
    });
    // Upper case sorts before lower case, and "a.txt" before "a/…" ('.' < '/').
    expect(manifest.files.map((f) => f.path)).toEqual(['B/a.txt', 'a.txt', 'a/a.txt', 'a/b.txt', 'z.txt']);
    expect(manifest.totalBytes).toBe(2 + 1 + 3 + 0 + 1);
    expect(manifest.files.find((f) => f.path === 'a/b.txt')).toEqual({ path: 'a/b.txt', sha256: sha('bbb'), size: 3, mode: 0o644 });
    expect(ReleaseManifest.safeParse(manifest).success).toBe(true);
  });

  it('keeps only whether the owner may execute: 0755 or 0644, whatever the umask', () => {
    const manifest = buildReleaseManifest({
      version: '1',
      createdAt: AT,
      files: [file('run', '#!', 0o100775), file('tool', '#!', 0o100700), file('conf', 'c', 0o100664), file('key', 'k', 0o100600), file('odd', 'o', 0o100011)],
    });
    expect(Object.fromEntries(manifest.files.map((f) => [f.path, f.mode]))).toEqual({ conf: 0o644, key: 0o644, odd: 0o644, run: 0o755, tool: 0o755 });
  });

  it('refuses paths a robot could not stage safely, naming them', () => {
    for (const bad of ['/etc/passwd', 'a/../b', './a', 'a//b', 'a\\b', 'a/.']) {
      expect(() => buildReleaseManifest({ version: '1', createdAt: AT, files: [file(bad, 'x')] })).toThrow(ReleaseManifestError);
      expect(() => buildReleaseManifest({ version: '1', createdAt: AT, files: [file(bad, 'x')] })).toThrow(JSON.stringify(bad));
    }
  });

  it('refuses a path listed twice and a bad version', () => {
    expect(() => buildReleaseManifest({ version: '1', createdAt: AT, files: [file('a', 'x'), file('a', 'y')] })).toThrow('a: listed twice');
    expect(() => buildReleaseManifest({ version: '../1', createdAt: AT, files: [] })).toThrow(/version/);
  });

  it('builds an empty release', () => {
    const manifest = buildReleaseManifest({ version: '0.0.1', createdAt: AT, files: [] });
    expect(manifest).toMatchObject({ files: [], totalBytes: 0 });
    expect(releaseSummary(manifest)).toEqual({ version: '0.0.1', manifestSha256: manifestSha256(manifest), fileCount: 0, totalBytes: 0, createdAt: AT });
  });
});

describe('the canonical manifest', () => {
  const files = [file('b', 'b'), file('a', 'a', 0o100755)];
  const manifest = buildReleaseManifest({ version: '2.0.0', model: 'xle', createdAt: AT, files });

  it('is the same bytes whatever order the keys and files came in', () => {
    const shuffled = buildReleaseManifest({ version: '2.0.0', model: 'xle', createdAt: AT, files: [...files].reverse() });
    const reordered = JSON.parse(JSON.stringify({ totalBytes: manifest.totalBytes, files: manifest.files.map((f) => ({ mode: f.mode, size: f.size, sha256: f.sha256, path: f.path })), createdAt: AT, model: 'xle', version: '2.0.0', format: 1 })) as ReleaseManifest;
    expect(canonicalManifestJson(shuffled)).toBe(canonicalManifestJson(manifest));
    expect(canonicalManifestJson(reordered)).toBe(canonicalManifestJson(manifest));
    expect(canonicalManifestJson(manifest)).toBe(
      `{"format":1,"version":"2.0.0","model":"xle","createdAt":"${AT}","files":[{"path":"a","sha256":"${sha('a')}","size":1,"mode":493},{"path":"b","sha256":"${sha('b')}","size":1,"mode":420}],"totalBytes":2}`,
    );
  });

  it('is named by its SHA-256, and reads back only from bytes that hash to that name', () => {
    const stored = manifestObject(manifest);
    expect(stored.sha256).toBe(sha256Hex(canonicalManifestJson(manifest)));
    expect(parseStoredManifest(stored.bytes, stored.sha256)).toEqual(manifest);
    const tampered = Buffer.from(stored.bytes.toString().replace('"size":1', '"size":2'));
    expect(() => parseStoredManifest(tampered, stored.sha256)).toThrow('the store is damaged');
  });

  it('changes with any file, the model or the version; content comparison ignores only createdAt', () => {
    const later = buildReleaseManifest({ version: '2.0.0', model: 'xle', createdAt: '2026-12-02T00:00:00.000Z', files });
    expect(sameReleaseContent(manifest, later)).toBe(true);
    expect(manifestSha256(later)).not.toBe(manifestSha256(manifest));
    expect(sameReleaseContent(manifest, buildReleaseManifest({ version: '2.0.0', createdAt: AT, files }))).toBe(false);
    expect(sameReleaseContent(manifest, buildReleaseManifest({ version: '2.0.0', model: 'xle', createdAt: AT, files: [file('a', 'a'), file('b', 'b')] }))).toBe(false);
    expect(sameReleaseContent(manifest, buildReleaseManifest({ version: '2.0.0', model: 'xle', createdAt: AT, files: [files[0]!] }))).toBe(false);
  });
});
