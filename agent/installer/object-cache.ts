import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, mkdir, open, rename, rm, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDirectory } from '../adapters/durable-file.js';

/**
 * The robot's object cache: every file of every release once, by its SHA-256, at `<root>/objects/<sha256>`.
 *
 * INVARIANTS
 * - A file under its hash's name holds exactly the bytes of that hash: objects are written to a temporary sibling
 *   (`.tmp-<random>`), hashed while written, fsynced, and renamed into place only when the hash matches; a mismatch
 *   deletes the temporary file and throws HashMismatchError. A power cut leaves at most a stale temporary file,
 *   which is never read (and is removed by `removeLeftovers`).
 * - Objects are never modified in place; `has` says yes only for a renamed (complete, verified) object.
 */

export class HashMismatchError extends Error {
  override readonly name = 'HashMismatchError';
  constructor(
    readonly expected: string,
    readonly actual: string,
    /** The release path the object was fetched for. */
    readonly path: string | undefined,
  ) {
    super(`hash mismatch${path === undefined ? '' : ` for ${path}`}: expected ${expected}, got ${actual}`);
  }
}

export class ObjectCache {
  readonly directory: string;

  constructor(root: string) {
    this.directory = join(root, 'objects');
  }

  path(sha256: string): string {
    return join(this.directory, sha256);
  }

  async init(): Promise<void> {
    await mkdir(this.directory, { recursive: true });
    await this.removeLeftovers();
  }

  async has(sha256: string): Promise<boolean> {
    return access(this.path(sha256)).then(
      () => true,
      () => false,
    );
  }

  /** Which of `shas` are present (one readdir, not one stat each). */
  async present(): Promise<Set<string>> {
    const names = await readdir(this.directory).catch(() => [] as string[]);
    return new Set(names.filter((name) => /^[0-9a-f]{64}$/.test(name)));
  }

  /**
   * Writes the chunks of `body` as the object `sha256`, verifying the hash before it becomes visible. Resolves with
   * the bytes written; throws HashMismatchError (naming `path`) when they are not that object.
   */
  async write(sha256: string, body: AsyncIterable<Uint8Array>, path?: string): Promise<number> {
    const temporary = join(this.directory, `.tmp-${randomBytes(6).toString('hex')}`);
    const hash = createHash('sha256');
    let bytes = 0;
    const handle = await open(temporary, 'w', 0o644);
    try {
      try {
        for await (const chunk of body) {
          hash.update(chunk);
          bytes += chunk.byteLength;
          await handle.write(chunk);
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      const actual = hash.digest('hex');
      if (actual !== sha256) throw new HashMismatchError(sha256, actual, path);
      await rename(temporary, this.path(sha256));
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
    await syncDirectory(this.directory);
    return bytes;
  }

  /** Re-hashes a stored object (a staging check after a crash); false when absent or corrupt. */
  async verify(sha256: string): Promise<boolean> {
    const hash = createHash('sha256');
    try {
      for await (const chunk of createReadStream(this.path(sha256))) hash.update(chunk as Buffer);
    } catch {
      return false;
    }
    return hash.digest('hex') === sha256;
  }

  private async removeLeftovers(): Promise<void> {
    const names = await readdir(this.directory).catch(() => [] as string[]);
    await Promise.all(names.filter((name) => name.startsWith('.tmp-')).map((name) => rm(join(this.directory, name), { force: true })));
  }
}
