import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { emptyJobsState, type JobsState } from './job-engine.js';

/**
 * Where the local IoT Jobs service keeps its jobs and executions: `<state>/iot-jobs.json`, so a restarted local cloud
 * still has them (the driver re-arms their timers from the deadlines stored with them).
 *
 * INVARIANTS
 * - a save replaces the file atomically: the JSON is written to a temporary file, fsync'ed, renamed over the file,
 *   and the directory fsync'ed, so a crash leaves the old state or the new one, never a torn file;
 * - saves run one at a time, in call order (each writes the state as it was when it was called);
 * - a file that is not a jobs state stops the load with its path named (never silently replaced by an empty state).
 */
export class JobStore {
  private writing: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  static in(stateDir: string): JobStore {
    return new JobStore(join(stateDir, 'iot-jobs.json'));
  }

  async load(): Promise<JobsState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return emptyJobsState();
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new Error(`${this.path} is not JSON (${(error as Error).message}); fix or delete it (the local jobs are lost then)`);
    }
    const state = parsed as Partial<JobsState> | null;
    if (!state || state.version !== 1 || typeof state.jobs !== 'object' || typeof state.nextExecutionNumber !== 'number') {
      throw new Error(`${this.path} is not a local IoT Jobs state (version 1); fix or delete it`);
    }
    return state as JobsState;
  }

  save(state: JobsState): Promise<void> {
    const json = `${JSON.stringify(state)}\n`;
    const run = async (): Promise<void> => {
      await mkdir(dirname(this.path), { recursive: true });
      const temporary = `${this.path}.${process.pid}.tmp`;
      const file = await open(temporary, 'w');
      try {
        await file.writeFile(json);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temporary, this.path);
      const directory = await open(dirname(this.path), 'r');
      try {
        await directory.sync();
      } finally {
        await directory.close();
      }
    };
    const done = this.writing.then(run, run);
    this.writing = done.catch(() => undefined);
    return done;
  }
}
