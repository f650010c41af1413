import { spawn } from 'node:child_process';
import { readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * `npm start` builds the dashboard when its build is older than its sources, so the page it serves is the code in the
 * tree. The sources: everything under `dashboard/src` and `schemas/` (the dashboard imports its types and contracts
 * from there), `dashboard/index.html` and `dashboard/vite.config.ts`. The build is done when `dist/.build-stamp` (written
 * after a successful build; else `dist/index.html`) is newer than every source. Vite runs in a child process (its
 * memory and output are not the local cloud's), with the repository's own Vite.
 */

export interface DashboardSources {
  /** The repository's root (where package.json is). */
  readonly root: string;
  /** `dashboard/dist` under the root by default. */
  readonly distDir?: string;
}

export type DashboardFreshness =
  | { readonly current: true }
  | { readonly current: false; readonly reason: string };

export const BUILD_STAMP = '.build-stamp';
const VITE_CONFIG = 'dashboard/vite.config.ts';

export class DashboardBuildFailed extends Error {
  override readonly name = 'DashboardBuildFailed';
}

/** Whether the build in `distDir` is newer than every source of the dashboard, and if not, why. */
export async function dashboardFreshness(sources: DashboardSources): Promise<DashboardFreshness> {
  const distDir = sources.distDir ?? path.join(sources.root, 'dashboard', 'dist');
  const built = (await mtimeOf(path.join(distDir, BUILD_STAMP))) ?? (await mtimeOf(path.join(distDir, 'index.html')));
  if (built === undefined) return { current: false, reason: 'it has not been built yet' };
  const inputs = ['dashboard/src', 'dashboard/index.html', VITE_CONFIG, 'schemas'].map((input) => path.join(sources.root, input));
  for (const input of inputs) {
    const newest = await newestFile(input);
    if (newest && newest.mtimeMs > built) {
      return { current: false, reason: `${path.relative(sources.root, newest.file)} changed since the last build` };
    }
  }
  return { current: true };
}

/**
 * Builds the dashboard when it is out of date (`onBuild` is told why, before the build starts). Resolves to whether it
 * built; a failed build rejects with DashboardBuildFailed, carrying the end of Vite's output and what to do.
 */
export async function ensureDashboardBuilt(sources: DashboardSources, onBuild: (reason: string) => void = () => {}): Promise<boolean> {
  const freshness = await dashboardFreshness(sources);
  if (freshness.current) return false;
  onBuild(freshness.reason);
  const distDir = sources.distDir ?? path.join(sources.root, 'dashboard', 'dist');
  // The stamp carries the time the build started: a source saved during the build makes the next start build again.
  const started = new Date();
  await runViteBuild(sources.root);
  const stamp = path.join(distDir, BUILD_STAMP);
  await writeFile(stamp, `${started.toISOString()}\n`);
  await utimes(stamp, started, started);
  return true;
}

function runViteBuild(root: string): Promise<void> {
  let vite: string;
  try {
    vite = path.join(path.dirname(createRequire(path.join(root, 'package.json')).resolve('vite/package.json')), 'bin', 'vite.js');
  } catch {
    return Promise.reject(new DashboardBuildFailed('Vite is not installed: run npm ci, then npm start again.'));
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [vite, 'build', '--config', VITE_CONFIG, '--logLevel', 'warn'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (error) => reject(new DashboardBuildFailed(`Vite could not be started: ${error.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const tail = output.trim().split('\n').slice(-30).join('\n');
      reject(
        new DashboardBuildFailed(
          `The dashboard did not build (vite build ${signal ? `killed by ${signal}` : `exited with ${code}`}):\n${tail}\n` +
            `Fix the error in dashboard/ (npx vite build --config ${VITE_CONFIG} shows it again), or start with the ` +
            'dashboard built elsewhere: DASHBOARD_DIST=/path/to/dist npm start.',
        ),
      );
    });
  });
}

async function mtimeOf(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).mtimeMs;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The most recently modified file under `entry` (itself when it is a file); undefined when there is none. */
async function newestFile(entry: string): Promise<{ file: string; mtimeMs: number } | undefined> {
  let info;
  try {
    info = await stat(entry);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (!info.isDirectory()) return { file: entry, mtimeMs: info.mtimeMs };
  let newest: { file: string; mtimeMs: number } | undefined;
  for (const child of await readdir(entry)) {
    if (child === 'node_modules' || child === 'dist') continue;
    const found = await newestFile(path.join(entry, child));
    if (found && (!newest || found.mtimeMs > newest.mtimeMs)) newest = found;
  }
  return newest;
}
