import { copyFile, chmod, mkdir, open, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ReleaseManifest } from '../../schemas/deployments.js';
import { syncDirectory } from '../adapters/durable-file.js';
import type { ObjectCache } from './object-cache.js';

/**
 * The robot's version directories and the `current` switch (layout: agent/core/install-plan.ts).
 *
 * INVARIANTS
 * - `versions/<v>` exists only complete: it is built as `versions/.staging-<v>` (files copied from the object cache,
 *   each given its manifest mode and fsynced, then the marker `.heartbeat-release.json`), and renamed into place in one
 *   step, the folder fsynced. A staging folder left by a crash is never pointed at and is rebuilt from scratch.
 * - `current` is only ever replaced by renaming a complete symlink (`current.tmp`) over it, then fsyncing the root:
 *   at every instant it names one complete version (or is absent before the first install).
 * - Files are copied, never hard-linked: a service that writes into its tree cannot corrupt the object cache.
 */

export const RELEASE_MARKER = '.heartbeat-release.json';

export interface VersionInfo {
  readonly version: string;
  readonly manifestSha256: string;
  /** Epoch ms when it was staged. */
  readonly installedAt: number;
}

export class StageError extends Error {
  override readonly name = 'StageError';
}

export class VersionStore {
  readonly versionsDirectory: string;
  readonly currentLink: string;

  constructor(readonly root: string) {
    this.versionsDirectory = join(root, 'versions');
    this.currentLink = join(root, 'current');
  }

  async init(): Promise<void> {
    await mkdir(this.versionsDirectory, { recursive: true });
    await rm(`${this.currentLink}.tmp`, { force: true });
  }

  versionPath(version: string): string {
    return join(this.versionsDirectory, version);
  }

  /** The version `current` points at; null when there is none. */
  async currentVersion(): Promise<string | null> {
    try {
      const target = await readlink(this.currentLink);
      const match = /^versions\/([^/]+)\/?$/.exec(target);
      return match ? (match[1] ?? null) : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  /** The marker of a complete `versions/<v>`; undefined when absent or not complete. */
  async info(version: string): Promise<VersionInfo | undefined> {
    try {
      const marker = JSON.parse(await readFile(join(this.versionPath(version), RELEASE_MARKER), 'utf8')) as VersionInfo;
      return marker.version === version ? marker : undefined;
    } catch {
      return undefined;
    }
  }

  /** Every complete version, with its marker. */
  async list(): Promise<VersionInfo[]> {
    const names = await readdir(this.versionsDirectory).catch(() => [] as string[]);
    const infos = await Promise.all(names.filter((n) => !n.startsWith('.')).map((n) => this.info(n)));
    return infos.filter((i): i is VersionInfo => i !== undefined);
  }

  /**
   * Makes `versions/<manifest.version>` complete from the cache (every object must be there); a complete directory of
   * the same manifest is reused as is. Returns whether it was reused.
   */
  async stage(manifest: ReleaseManifest, manifestSha256: string, cache: ObjectCache, now: number): Promise<{ reused: boolean }> {
    const { version } = manifest;
    const existing = await this.info(version);
    if (existing?.manifestSha256 === manifestSha256) return { reused: true };
    if (existing) {
      if ((await this.currentVersion()) === version) {
        throw new StageError(`versions/${version} is running and holds another release (manifest ${existing.manifestSha256})`);
      }
      await rm(this.versionPath(version), { recursive: true, force: true });
    }
    const staging = join(this.versionsDirectory, `.staging-${version}`);
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    const folders = new Set<string>([staging]);
    for (const file of manifest.files) {
      const target = join(staging, file.path);
      const folder = dirname(target);
      if (!folders.has(folder)) {
        await mkdir(folder, { recursive: true });
        folders.add(folder);
      }
      await copyFile(cache.path(file.sha256), target);
      await chmod(target, file.mode);
      await fsyncFile(target);
    }
    const info: VersionInfo = { version, manifestSha256, installedAt: now };
    await writeFile(join(staging, RELEASE_MARKER), JSON.stringify(info));
    await fsyncFile(join(staging, RELEASE_MARKER));
    // Deepest first, so each folder's entries are durable before its parent's.
    for (const folder of [...folders].sort((a, b) => b.length - a.length)) await syncDirectory(folder);
    await rename(staging, this.versionPath(version));
    await syncDirectory(this.versionsDirectory);
    return { reused: false };
  }

  /** Points `current` at `versions/<version>` (complete), or removes it for null; atomic and durable. */
  async switchTo(version: string | null): Promise<void> {
    if (version === null) {
      await rm(this.currentLink, { force: true });
      await syncDirectory(this.root);
      return;
    }
    if (!(await this.info(version))) throw new StageError(`versions/${version} is not a complete version`);
    const temporary = `${this.currentLink}.tmp`;
    await rm(temporary, { force: true });
    await symlink(join('versions', version), temporary);
    await rename(temporary, this.currentLink);
    await syncDirectory(this.root);
  }

  async remove(version: string): Promise<void> {
    // Renamed aside first, so a crash mid-delete never leaves a half-deleted directory under a version's name.
    const aside = join(this.versionsDirectory, `.deleting-${version}`);
    await rm(aside, { recursive: true, force: true });
    await rename(this.versionPath(version), aside);
    await syncDirectory(this.versionsDirectory);
    await rm(aside, { recursive: true, force: true });
  }

  /** Removes staging and deleting leftovers other than `.staging-<keep>`. */
  async removeLeftovers(): Promise<void> {
    const names = await readdir(this.versionsDirectory).catch(() => [] as string[]);
    await Promise.all(
      names.filter((n) => n.startsWith('.staging-') || n.startsWith('.deleting-')).map((n) => rm(join(this.versionsDirectory, n), { recursive: true, force: true })),
    );
  }
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
