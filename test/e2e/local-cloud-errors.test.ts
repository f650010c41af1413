import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePorts, freshStateDir, removeStateDir, ROOT, type Ports } from '../support/local-cloud-process.js';

/** `npm start` refusing to start: each problem gets a message that says what to do, and nothing is left running. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function stateDir(): Promise<string> {
  const dir = await freshStateDir();
  cleanups.push(() => removeStateDir(dir));
  return dir;
}

/** Runs the local cloud until it exits (it must, here) and returns its exit code and output. */
function startExpectingFailure(dir: string, ports: Ports, env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'local/main.ts', '--robots', '0'], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOCAL_STATE_DIR: dir,
      HTTP_PORT: String(ports.http),
      WS_PORT: String(ports.ws),
      MQTT_PORT: String(ports.mqtt),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    }),
  );
}

/** Processes whose command line names `path` (DynamoDB Local is started with `-dbPath <state>/dynamodb`). */
async function processesMentioning(path: string): Promise<string[]> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
  const commands = await Promise.all(
    pids.map(async (pid) => (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ')),
  );
  return commands.filter((command) => command.includes(path));
}

describe('npm start refuses to start, saying what to do', { timeout: 120_000 }, () => {
  it('when a port is taken', async () => {
    const ports = await freePorts();
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(ports.ws, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => blocker.close(resolve)));

    const { code, output } = await startExpectingFailure(await stateDir(), ports);

    expect(code).toBe(1);
    expect(output).toContain(`Port ${ports.ws} (WebSocket) is in use`);
    expect(output).toContain('set WS_PORT to a free port');
  });

  it('when another local cloud holds the state dir', async () => {
    const dir = await stateDir();
    // This test process is alive: to the local cloud it looks like another one using the dir.
    await writeFile(join(dir, 'local-cloud.pid'), `${process.pid}\n`);

    const { code, output } = await startExpectingFailure(dir, await freePorts());

    expect(code).toBe(1);
    expect(output).toContain(`Another local cloud (pid ${process.pid}) is using ${dir}`);
  });

  it('when Java is missing (DynamoDB Local needs it), and no process is left behind', async () => {
    const emptyPath = await mkdtemp(join(tmpdir(), 'no-java-'));
    cleanups.push(() => removeStateDir(emptyPath));

    const { code, output } = await startExpectingFailure(await stateDir(), await freePorts(), { PATH: emptyPath });

    expect(code).toBe(1);
    expect(output).toMatch(/DynamoDB Local could not start java.*It needs Java 17 on the PATH/s);
  });

  it('when the thing registry is damaged', async () => {
    const dir = await stateDir();
    await writeFile(join(dir, 'things.json'), '{"version": 1, "things": ');

    const { code, output } = await startExpectingFailure(dir, await freePorts());

    expect(code).toBe(1);
    expect(output).toContain(`${join(dir, 'things.json')} is not JSON`);
    expect(output).toContain('fix or delete it');
  });

  it('when the state dir holds a damaged CA', async () => {
    const dir = await stateDir();
    await mkdir(join(dir, 'ca'), { recursive: true });
    await writeFile(join(dir, 'ca', 'ca.pem'), 'not a certificate');
    await writeFile(join(dir, 'ca', 'ca.key'), 'not a key');

    const { code, output } = await startExpectingFailure(dir, await freePorts());

    expect(code).toBe(1);
    expect(output).toContain(`The local CA in ${join(dir, 'ca')} cannot be read`);
    expect(output).toContain('delete the state dir to start over');
    // DynamoDB Local, started before the CA was read, was stopped again.
    expect(await processesMentioning(dir)).toEqual([]);
  });
});
