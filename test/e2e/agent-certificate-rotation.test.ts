import { readFile, writeFile } from 'node:fs/promises';
import { resolve, dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateIdOfPem, startingCredentials } from '../../agent/certificate-rotation.js';
import {
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  startAgentProcess,
  startCloudProcess,
  type AgentProcess,
  type CloudProcess,
} from '../support/local-cloud-process.js';

/**
 * Certificate rotation end to end (issue 11, item 4), with the REAL agent process (agent/main.ts) against the local
 * cloud process: the admin asks for a rotation over the API, the agent makes a new key, gets its certificate, moves
 * its live connection to it, and the cloud deactivates the old one and records CertificateRotated. The agent's files
 * then name the new certificate, and a restarted agent connects with it (the old one is inactive: connecting with it
 * would be refused).
 */
const ROBOT = 'lekiwi-ROTATE01';

let stateDir: string;
let cloud: CloudProcess | undefined;
let configFile: string;
let agentStateDir: string;
let baseCredentials: { certificateFile: string; privateKeyFile: string };
const agents: AgentProcess[] = [];

interface LoggedEvent {
  seq: number;
  type: string;
  data?: Record<string, unknown>;
}

async function events(): Promise<LoggedEvent[]> {
  const { body } = await getJson(cloud!.endpoints, `/robots/${ROBOT}/events?limit=100`);
  return ((body as { items?: LoggedEvent[] }).items ?? []).sort((a, b) => a.seq - b.seq);
}

async function status(): Promise<string | undefined> {
  const { body } = await getJson(cloud!.endpoints, `/robots/${ROBOT}`);
  return (body as { status?: string } | null)?.status;
}

/** Polls with the agent's and the cloud's output in the failure message. */
async function waitUntil<T>(what: string, read: () => Promise<T>, holds: (value: T) => boolean, timeout = 60_000): Promise<T> {
  let last: T | undefined;
  try {
    await expect
      .poll(async () => holds((last = await read())), { message: what, timeout, interval: 250 })
      .toBe(true);
  } catch (error) {
    throw new Error(
      `${(error as Error).message}\nlast: ${JSON.stringify(last).slice(0, 2000)}\nagent: ${agents.at(-1)?.output().slice(-3000)}\ncloud: ${cloud?.output().slice(-2000)}`,
    );
  }
  return last as T;
}

async function stopAgent(agent: AgentProcess): Promise<void> {
  agent.child.kill('SIGTERM');
  expect(await agent.exited).toEqual({ code: 0, signal: null });
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  cloud = await startCloudProcess({ stateDir, ports: await freePorts() });
  configFile = await issueCertificate(stateDir, ROBOT, 2);
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  config.reconnect = { minSeconds: 1, maxSeconds: 2 };
  config.teleoperation = { enabled: false };
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const base = dirname(configFile);
  agentStateDir = resolve(base, config.stateDir as string);
  baseCredentials = { certificateFile: resolve(base, config.certificateFile as string), privateKeyFile: resolve(base, config.privateKeyFile as string) };
}, 180_000);

afterAll(async () => {
  for (const agent of agents) if (agent.child.exitCode === null && agent.child.signalCode === null) agent.child.kill('SIGKILL');
  await cloud?.stop();
  await removeStateDir(stateDir);
});

describe('certificate rotation with the real agent process', { timeout: 240_000 }, () => {
  it('rotates on the admin command, stays online, and connects with the new certificate after a restart', async () => {
    const oldCertificateId = certificateIdOfPem(await readFile(baseCredentials.certificateFile, 'utf8'));
    agents.push(startAgentProcess(configFile));
    await waitUntil('the robot online', status, (value) => value === 'online');

    const token = (await readFile(cloud!.endpoints.tokens.admin, 'utf8')).trim();
    const response = await fetch(`${cloud!.endpoints.apiUrl}/robots/${ROBOT}/rotate-certificate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(response.status).toBe(202);
    const { requestId } = (await response.json()) as { robotId: string; requestId: string };
    expect(requestId).toMatch(/^rotation-/);

    const history = await waitUntil('CertificateRotated in the history', events, (items) => items.some((event) => event.type === 'CertificateRotated'));
    const rotated = history.find((event) => event.type === 'CertificateRotated')!;
    expect(rotated.data).toMatchObject({ requestId, oldCertificateId });
    const newCertificateId = rotated.data!.newCertificateId as string;
    expect(newCertificateId).toMatch(/^[0-9a-f]{64}$/);
    expect(newCertificateId).not.toBe(oldCertificateId);
    expect(history.map((event) => event.type)).not.toContain('CertificateRotationFailed');

    // Online on the new certificate: the hand-over under the same client id is no outage.
    await waitUntil('the robot online after the rotation', status, (value) => value === 'online');
    expect(agents[0]!.child.exitCode).toBeNull();

    // The agent's files (what the next start connects with) name the new certificate, and its key is a pair with it.
    const credentials = await waitUntil(
      'the agent to record the new certificate',
      () => startingCredentials(agentStateDir, baseCredentials),
      (value) => value.certificateFile !== baseCredentials.certificateFile,
    );
    expect(certificateIdOfPem(await readFile(credentials.certificateFile, 'utf8'))).toBe(newCertificateId);
    expect(credentials.privateKeyFile).not.toBe(baseCredentials.privateKeyFile);

    // Restarted, the agent connects with the new certificate (the old one is inactive now and would be refused).
    await stopAgent(agents[0]!);
    await waitUntil('the robot offline after the stop', status, (value) => value !== 'online');
    const seqBeforeRestart = (await events()).at(-1)!.seq;
    agents.push(startAgentProcess(configFile));
    const after = await waitUntil('RobotConnected after the restart', events, (items) =>
      items.some((event) => event.seq > seqBeforeRestart && event.type === 'RobotConnected'),
    );
    expect(await status()).toBe('online');
    expect(after.map((event) => event.type)).not.toContain('CertificateRotationFailed');
    expect(agents[1]!.child.exitCode).toBeNull();
    await stopAgent(agents[1]!);
  });
});
