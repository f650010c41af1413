import { readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InstallRecord } from '../core/install-plan.js';
import { replaceFileAtomically, syncDirectory, TEMPORARY_SUFFIX } from '../adapters/durable-file.js';

/**
 * `<root>/install.json`: the install under way (agent/core/install-plan.ts InstallRecord), the commit point of every
 * install step.
 *
 * INVARIANTS
 * - Replaced all-or-nothing (temporary sibling, fsync, rename, folder fsync): a power cut leaves the old or the new
 *   record, never a torn one; the leftover temporary file is never read.
 * - A file that is not a valid record is refused with InstallStateError naming the file, never taken as "no install"
 *   (that would leave a half-switched robot unrecovered).
 */

export class InstallStateError extends Error {
  override readonly name = 'InstallStateError';
}

export class InstallStore {
  readonly file: string;

  constructor(root: string) {
    this.file = join(root, 'install.json');
  }

  async load(): Promise<InstallRecord | undefined> {
    await rm(`${this.file}${TEMPORARY_SUFFIX}`, { force: true });
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new InstallStateError(`${this.file} is not JSON (${(error as Error).message})`);
    }
    const parsed = InstallRecord.safeParse(json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      throw new InstallStateError(`${this.file} is not an install record (${problems})`);
    }
    return parsed.data;
  }

  async save(record: InstallRecord): Promise<void> {
    await replaceFileAtomically(this.file, JSON.stringify(record));
  }

  async clear(): Promise<void> {
    await rm(this.file, { force: true });
    await syncDirectory(dirname(this.file));
  }
}
