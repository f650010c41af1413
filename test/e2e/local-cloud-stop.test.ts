import { spawn, type ChildProcess } from 'node:child_process';
import { access, chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { freePort, LOCAL_AWS } from '../../local/dynamodb-local.js';
import type { LocalEndpoints } from '../../local/cloud.js';
import { isLoopback, listeningSockets, processGroup } from '../support/listening-sockets.js';
import {
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  ROOT,
  startCloudProcess,
  type CloudProcess,
  type Ports,
} from '../support/local-cloud-process.js';
import { POLL } from '../support/poll.js';

/**
 * `npm start` as a developer runs it in a terminal, where Ctrl-C signals the whole process group (npm, the shell,
 * node): an orderly stop, the connected robot's disconnect in the event log, endpoints.json gone, "Stopped.", exit 0.
 * And while it runs, every socket it listens on is on 127.0.0.1, each on the port chosen for it.
 */
const ROBOT = 'lekiwi-STOP001';

let stateDir: string;
let ports: Ports;
let standIns: { dynamodb: number; pglite: number; iotData: number; kinesis: number };
let npmStart: ChildProcess;
let output = '';
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
let robot: MqttClient | undefined;
let restarted: CloudProcess | undefined;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function dynamoDbPid(): Promise<number | undefined> {
  const pid = Number((await readFile(join(stateDir, 'dynamodb.pid'), 'utf8').catch(() => '')).trim());
  return pid > 0 ? pid : undefined;
}

/**
 * npm's script shell, wrapped to record how each script's command ended: npm re-raises a SIGINT it received once its
 * script has ended, and sh dies of a SIGINT it received once its command has ended, so neither exit says anything
 * about the local cloud's. The wrapper (`<shell> -c <command>`, as npm calls it) runs `sh -c 'exec <command>'`,
 * relays SIGINT and SIGTERM to it (so the local cloud gets a Ctrl-C twice, as under the tsx CLI's relay), and
 * appends its exit code.
 */
async function recordingScriptShell(): Promise<{ shell: string; exits: () => Promise<string[]> }> {
  const shell = join(stateDir, 'script-shell.mjs');
  const exitsFile = join(stateDir, 'script-exits.txt');
  await writeFile(
    shell,
    `#!${process.execPath}
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
const child = spawn('/bin/sh', ['-c', 'exec ' + process.argv.at(-1)], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  appendFileSync(${JSON.stringify(exitsFile)}, \`\${code ?? signal} \${process.argv.at(-1)}\\n\`);
  process.exit(code ?? 1);
});
`,
  );
  await chmod(shell, 0o755);
  return { shell, exits: async () => (await readFile(exitsFile, 'utf8').catch(() => '')).trim().split('\n') };
}
let scriptExits: () => Promise<string[]>;

beforeAll(async () => {
  stateDir = await freshStateDir();
  const scriptShell = await recordingScriptShell();
  scriptExits = scriptShell.exits;
  ports = await freePorts();
  standIns = { dynamodb: await freePort(), pglite: await freePort(), iotData: await freePort(), kinesis: await freePort() };
  // `detached`: npm leads a process group of its own, as a terminal's foreground job does.
  npmStart = spawn('npm', ['start', '--', '--robots', '0'], {
    cwd: ROOT,
    detached: true,
    env: {
      ...process.env,
      LOCAL_STATE_DIR: stateDir,
      HTTP_PORT: String(ports.http),
      WS_PORT: String(ports.ws),
      MQTT_PORT: String(ports.mqtt),
      DYNAMODB_PORT: String(standIns.dynamodb),
      PGLITE_PORT: String(standIns.pglite),
      IOT_DATA_PORT: String(standIns.iotData),
      KINESIS_PORT: String(standIns.kinesis),
      MIN_KEEP_ALIVE_SECONDS: '1',
      POWERTOOLS_LOG_LEVEL: 'ERROR',
      npm_config_script_shell: scriptShell.shell,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  npmStart.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  npmStart.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  exited = new Promise((resolve) => npmStart.once('exit', (code, signal) => resolve({ code, signal })));
  // npm, tsx and the local cloud starting (DynamoDB Local, the stand-ins): far longer than the default wait; an exit ends it.
  await Promise.race([
    vi.waitFor(() => expect(output, 'npm start to be ready').toContain('Ready:'), { ...POLL, timeout: 180_000 }),
    exited.then(({ code, signal }) => {
      throw new Error(`npm start exited (${code ?? signal}) before it was ready:\n${output}`);
    }),
  ]);
}, 240_000);

afterAll(async () => {
  robot?.end(true);
  await restarted?.stop();
  // Whatever is left of the process group (nothing, when the stop went as it should).
  if (npmStart?.pid && (await processGroup(npmStart.pid)).length > 0) process.kill(-npmStart.pid, 'SIGKILL');
  const java = await dynamoDbPid();
  if (java && alive(java)) process.kill(java, 'SIGKILL');
  await removeStateDir(stateDir);
}, 120_000);

describe('npm start', () => {
  it('listens on 127.0.0.1 only, each part on the port chosen for it', async () => {
    const java = await dynamoDbPid();
    expect(java).toBeDefined();
    const sockets = await listeningSockets([...(await processGroup(npmStart.pid!)), java!]);
    expect(sockets.filter((socket) => !isLoopback(socket.address))).toEqual([]);
    expect(new Set(sockets.map((socket) => socket.port))).toEqual(
      new Set([ports.http, ports.ws, ports.mqtt, standIns.dynamodb, standIns.pglite, standIns.iotData, standIns.kinesis]),
    );
    const endpoints = JSON.parse(await readFile(join(stateDir, 'endpoints.json'), 'utf8')) as LocalEndpoints;
    expect(endpoints.dynamodbEndpoint).toBe(`http://127.0.0.1:${standIns.dynamodb}`);
    expect(endpoints.iotDataUrl).toBe(`http://127.0.0.1:${standIns.iotData}`);
    expect(endpoints.databaseUrl).toContain(`127.0.0.1:${standIns.pglite}/`);
  });

  it('stops in order on a Ctrl-C to its whole process group: the robot disconnect logged, endpoints.json gone, exit 0', async () => {
    await issueCertificate(stateDir, ROBOT, 30);
    const certs = join(stateDir, 'certs', ROBOT);
    robot = await mqtt.connectAsync(`mqtts://localhost:${ports.mqtt}`, {
      protocolVersion: 4,
      clientId: ROBOT,
      cert: await readFile(join(certs, 'certificate.pem.crt'), 'utf8'),
      key: await readFile(join(certs, 'private.pem.key'), 'utf8'),
      ca: await readFile(join(certs, 'ca.pem'), 'utf8'),
      keepalive: 30,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    robot.on('error', () => undefined);
    const endpoints = JSON.parse(await readFile(join(stateDir, 'endpoints.json'), 'utf8')) as LocalEndpoints;
    await expect
      .poll(async () => (await getJson(endpoints, `/robots/${ROBOT}`)).body?.status, { message: `${ROBOT} online in the API` })
      .toBe('online');

    process.kill(-npmStart.pid!, 'SIGINT');
    await exited;
    expect(output).toContain('Stopped.');
    // npm's start script (the local cloud) exited 0; npm waited for it, and nothing of the group is left.
    expect((await scriptExits()).at(-1)).toMatch(/^0 .*local\/main\.ts/);
    expect(await processGroup(npmStart.pid!)).toEqual([]);
    await expect(access(join(stateDir, 'endpoints.json'))).rejects.toThrow(/ENOENT/);

    // The disconnect the stop announced is in the event log: read it back from a local cloud on the same state.
    restarted = await startCloudProcess({ stateDir, ports });
    const dynamo = new DynamoDBClient({ ...LOCAL_AWS, endpoint: restarted.endpoints.dynamodbEndpoint });
    try {
      const { events } = await new DynamoEventLog({ client: dynamo, tableName: restarted.endpoints.eventLogTable }).readEvents(ROBOT, { afterSeq: 0, limit: 10 });
      expect(events.map((entry) => entry.event.type)).toEqual(['RobotConnected', 'RobotDisconnected']);
      expect(events[1]!.event.data).toMatchObject({ clientInitiated: false, reason: 'SERVER_INITIATED_DISCONNECT' });
    } finally {
      dynamo.destroy();
    }
  }, 300_000);
});
