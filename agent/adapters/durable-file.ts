import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * The two fsync habits a crash-safe file layout needs. A rename is only durable once the directory holding it is
 * synced, and a file only replaces another atomically if it was complete and synced *before* the rename; otherwise a
 * power cut can leave an empty or half-written file under the real name.
 */

export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The temporary sibling `replaceFileAtomically` writes first; one left by a crash is stale and may be removed. */
export const TEMPORARY_SUFFIX = '.tmp';

/**
 * Replaces `path` with `data` all-or-nothing: write a temporary sibling (created with `mode`, so a secret is never
 * readable by others even for a moment), fsync it, rename it over, fsync the folder.
 */
export async function replaceFileAtomically(path: string, data: string, mode = 0o644): Promise<void> {
  const temporary = `${path}${TEMPORARY_SUFFIX}`;
  const handle = await open(temporary, 'w', mode);
  try {
    await handle.chmod(mode); // a stale temporary file keeps its old mode; open's mode applies only to a new one
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  await syncDirectory(dirname(path));
}
