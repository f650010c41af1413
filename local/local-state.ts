import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';

/**
 * The local cloud's state dir and the checks that give a clear message before anything starts: the dir is
 * writable, no other local cloud uses it, and the ports are free. A Java process a killed run left behind is
 * stopped first, so DynamoDB Local never piles up.
 */
export class LocalCloudError extends Error {
  override readonly name = 'LocalCloudError';
}

export interface StatePaths {
  readonly root: string;
  readonly dynamodb: string;
  readonly postgres: string;
  readonly ca: string;
  readonly jwt: string;
  readonly tokens: string;
  readonly streams: string;
  /** The ingest stream's LevelDB (kinesalite). */
  readonly kinesis: string;
  readonly fleet: string;
  /** Releases and their objects (local/artifact-store.ts): S3's part. */
  readonly artifacts: string;
  readonly endpoints: string;
  readonly lock: string;
  readonly dynamodbPid: string;
}

export function statePaths(root: string): StatePaths {
  return {
    root,
    dynamodb: join(root, 'dynamodb'),
    postgres: join(root, 'postgres'),
    ca: join(root, 'ca'),
    jwt: join(root, 'jwt'),
    tokens: join(root, 'tokens'),
    streams: join(root, 'streams'),
    kinesis: join(root, 'kinesis'),
    fleet: join(root, 'fleet'),
    artifacts: join(root, 'artifacts'),
    endpoints: join(root, 'endpoints.json'),
    lock: join(root, 'local-cloud.pid'),
    dynamodbPid: join(root, 'dynamodb.pid'),
  };
}

/** Creates the state dir and takes it for this process; refuses if a live local cloud already has it. */
export async function claimStateDir(paths: StatePaths): Promise<() => Promise<void>> {
  try {
    await mkdir(paths.root, { recursive: true });
    await mkdir(paths.dynamodb, { recursive: true });
  } catch (error) {
    throw new LocalCloudError(`Cannot create the state dir ${paths.root} (${(error as Error).message}); set LOCAL_STATE_DIR to a writable folder.`);
  }
  const holder = await readPid(paths.lock);
  if (holder !== undefined && holder !== process.pid && isAlive(holder)) {
    throw new LocalCloudError(
      `Another local cloud (pid ${holder}) is using ${paths.root}. Stop it (Ctrl-C in its terminal, or kill ${holder}), ` +
        'or give this one its own LOCAL_STATE_DIR.',
    );
  }
  await writeFile(paths.lock, `${process.pid}\n`);
  await stopLeftoverDynamoDb(paths.dynamodbPid);
  return async () => {
    await rm(paths.lock, { force: true });
  };
}

/** DynamoDB Local started by a run that was killed (SIGKILL leaves no chance to stop it) would hold the db files. */
async function stopLeftoverDynamoDb(pidFile: string): Promise<void> {
  const pid = await readPid(pidFile);
  if (pid === undefined || !isAlive(pid)) return;
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!command.includes('DynamoDBLocal')) return;
  process.kill(pid, 'SIGKILL');
  for (let waited = 0; waited < 5_000 && isAlive(pid); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
}

export async function rememberDynamoDbPid(paths: StatePaths, pid: number | undefined): Promise<void> {
  if (pid === undefined) await rm(paths.dynamodbPid, { force: true });
  else await writeFile(paths.dynamodbPid, `${pid}\n`);
}

async function readPid(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  const pid = Number.parseInt(text ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Fails with the variable to change when a port is taken (checked up front, before anything starts). */
export async function assertPortFree(port: number, host: string, what: string, variable: string): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new LocalCloudError(
          error.code === 'EADDRINUSE'
            ? `Port ${port} (${what}) is in use — is another local cloud running? Stop it, or set ${variable} to a free port.`
            : `Cannot listen on ${host}:${port} for ${what} (${error.message}); set ${variable} to another port.`,
        ),
      ),
    );
    server.listen(port, host, () => server.close(() => resolve()));
  });
}
