import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { createProcessWatch } from '../../agent/adapters/process-watch.js';

/**
 * The process watch on this machine's real /proc: a process that only names a watched script (`tail -f` on a file of
 * that name, a Python program given it as an argument) is not running it; `python3 <script>` is. Names are unique to
 * this run, so other tests' processes on the same machine cannot answer for ours.
 */

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function folder(): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'heartbeat-process-watch-'));
  cleanups.push(() => rm(path, { recursive: true, force: true }));
  return path;
}

/** Starts `command`, waiting until it runs (its first output, or a moment for silent ones like tail). */
async function start(command: string, args: readonly string[], cwd?: string): Promise<ChildProcess> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(cwd === undefined ? {} : { cwd }) });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('spawn', () => resolve());
  });
  return child;
}

const SLEEPER = 'import sys, time\nprint("up", flush=True)\nwhile True:\n    time.sleep(3600)\n';

describe('process watch on the real /proc', () => {
  it('counts the Python program that runs a watched script, not tail, nor a program given it as an argument', async () => {
    // Given a watched script name unique to this run, a file of that name followed by tail, and a Python program that
    // takes that name as an argument
    const unique = `${process.pid}_${Math.floor(Math.random() * 1e9)}`;
    const script = `4_xlerobot_teleop_keyboard_${unique}.py`;
    const dir = await folder();
    const scriptPath = join(dir, script);
    await writeFile(scriptPath, SLEEPER);
    const otherPath = join(dir, `other_${unique}.py`);
    await writeFile(otherPath, SLEEPER);
    const watch = createProcessWatch({ programs: [script] });
    const scan = () => watch.scan(performance.now());

    const tail = await start('tail', ['-f', scriptPath]);
    const other = await start('python3', [otherPath, '--config', script]);
    await new Promise<void>((resolve) => other.stdout!.once('data', () => resolve()));

    // When the watch scans past every re-read of the new processes (their command lines settled after exec)
    const ages = [0, 300, 2_100];
    const seen = ages.map((age) => watch.scan(performance.now() + age));

    // Then neither counts as the script running
    expect(tail.exitCode).toBeNull();
    expect(seen).toEqual([[], [], []]);

    // When the script itself runs under Python, with an interpreter option in front
    const teleop = await start('python3', ['-u', scriptPath]);
    await new Promise<void>((resolve) => teleop.stdout!.once('data', () => resolve()));

    // Then it is seen, and it is gone once the program exits while tail still follows the file
    await expect.poll(scan, { message: 'the script to be seen running' }).toEqual([script]);
    teleop.kill('SIGTERM');
    await expect.poll(scan, { message: 'the script to be gone' }).toEqual([]);
    expect(tail.exitCode).toBeNull();
  });

  it('counts a module run with python -m', async () => {
    // Given a module of a name unique to this run
    const module = `heartbeat_watch_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
    const dir = await folder();
    await writeFile(join(dir, `${module}.py`), SLEEPER);
    const watch = createProcessWatch({ programs: [`${module}_host`, module] });

    // When Python runs it as a module
    const host = await start('python3', ['-u', '-m', module], dir);
    await new Promise<void>((resolve) => host.stdout!.once('data', () => resolve()));

    // Then that module, and only it, is running
    await expect.poll(() => watch.scan(performance.now()), { message: 'the module to be seen running' }).toEqual([module]);
  });
});
