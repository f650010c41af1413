import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { DiscoverResult } from '../../schemas/index.js';
import {
  connectLiveClient,
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  startAgentProcess,
  startCloudProcess,
  type AgentProcess,
  type CloudProcess,
  type LiveClient,
} from '../support/local-cloud-process.js';
import { POLL } from '../support/poll.js';

/**
 * "Report now" for the fleet, end to end on the local cloud process: POST /api/v2/discover → the http-api handler →
 * IoT data plane Publish (AWS's SDK client against the local stand-in) → the broker → the agent process's report-now
 * → a telemetry sample through Basic Ingest → the event log → the live feed as RobotTelemetry.
 */
const ROBOT = 'lekiwi-DSC001';
/** The agent's own policy would hold a second sample this long: any sooner one was asked for. */
const MIN_INTERVAL_MS = 600_000;

let stateDir: string;
let cloud: CloudProcess;
let live: LiveClient;
let agent: AgentProcess | undefined;

const telemetryOf = (robotId: string) => live.messages.filter((message) => message.type === 'RobotTelemetry' && message.robotId === robotId);

async function post(path: string, role: 'admin' | 'engineer' | 'operator', body?: string): Promise<{ status: number; body: any }> {
  const token = (await readFile(cloud.endpoints.tokens[role], 'utf8')).trim();
  const response = await fetch(`${cloud.endpoints.apiUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  cloud = await startCloudProcess({ stateDir, ports: await freePorts() });
  live = await connectLiveClient(cloud.endpoints);
}, 180_000);

afterAll(async () => {
  live?.close();
  if (agent && agent.child.exitCode === null) agent.child.kill('SIGKILL');
  await cloud?.stop();
  await removeStateDir(stateDir);
});

describe('POST /api/v2/discover on the local cloud', { timeout: 120_000 }, () => {
  it('asks every online robot to report now: 202, and its fresh sample reaches the live feed', async () => {
    // Given an agent whose telemetry policy holds samples for 10 minutes after the first
    const configFile = await issueCertificate(stateDir, ROBOT);
    const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, any>;
    config.telemetry = { ...config.telemetry, minIntervalMs: MIN_INTERVAL_MS, maxIntervalMs: 2 * MIN_INTERVAL_MS };
    await writeFile(configFile, JSON.stringify(config, null, 2));
    agent = startAgentProcess(configFile);
    await live.waitFor((m) => m.type === 'RobotConnected' && m.robotId === ROBOT, `${ROBOT} to connect`, 60_000);
    await live.waitFor((m) => m.type === 'RobotTelemetry' && m.robotId === ROBOT, `${ROBOT}'s first sample`, 30_000);
    await expect.poll(async () => (await getJson(cloud.endpoints, `/robots/${ROBOT}`)).body?.status, { message: `${ROBOT} online in the read model` }).toBe('online');
    const samplesBefore = telemetryOf(ROBOT).length;
    expect(samplesBefore).toBe(1);

    // When an engineer asks the fleet to report
    const askedAt = Date.now();
    const answer = await post('/discover', 'engineer');

    // Then 202 with the request id and at least this robot asked, none failed
    expect(answer.status).toBe(202);
    const result = DiscoverResult.parse(answer.body);
    expect(result.asked).toBeGreaterThanOrEqual(1);
    expect(result.failed).toBe(0);
    // and a new sample of this robot, taken after the request, arrives on the live feed
    await vi.waitFor(
      () => expect(telemetryOf(ROBOT).length, `${ROBOT}'s sample answering report-now; agent output: ${agent?.output().slice(-2000)}`).toBeGreaterThan(samplesBefore),
      POLL,
    );
    const answered = telemetryOf(ROBOT).at(-1)!;
    expect(Date.parse(answered.at as string)).toBeGreaterThanOrEqual(askedAt - 1_000);
    expect(answered.data).toMatchObject({ sampledAt: answered.at, cpuPercent: expect.any(Number) });
    // and it says which request it answers; the robot's earlier sample answered none
    expect(answered.requestId).toBe(result.requestId);
    expect(telemetryOf(ROBOT)[0]).not.toHaveProperty('requestId');
  });

  it('refuses an operator (403) and a body it does not know (400), and asks nobody', async () => {
    const before = telemetryOf(ROBOT).length;
    const operator = await post('/discover', 'operator');
    expect(operator.status).toBe(403);
    expect(operator.body.error).toMatchObject({ code: 'FORBIDDEN', details: { requiredRole: 'engineer' } });
    const unknown = await post('/discover', 'admin', '{"only":"lekiwi"}');
    expect(unknown.status).toBe(400);

    // An admin may: proof that the route works for them, and a fence for the check below.
    const admin = await post('/discover', 'admin', '{}');
    expect(admin.status).toBe(202);
    await expect.poll(() => telemetryOf(ROBOT).length, { message: 'the admin request’s sample' }).toBe(before + 1);
    // Only the admin's request produced a sample: the refused ones (sent before it) asked nobody. A while longer for
    // a straggler from them to show up, had there been one.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(telemetryOf(ROBOT).length).toBe(before + 1);
  });
});

describe('the local cloud’s WebSocket API', { timeout: 60_000 }, () => {
  it('answers an unknown action through $default with the actions that exist, as the deployed API does', async () => {
    const token = (await readFile(cloud.endpoints.tokens.operator, 'utf8')).trim();
    const socket = new WebSocket(`${cloud.endpoints.webSocketUrl}?token=${encodeURIComponent(token)}`);
    const replies: unknown[] = [];
    socket.on('message', (data) => replies.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    try {
      socket.send(JSON.stringify({ action: 'watch', robotIds: ['*'] }));
      await expect.poll(() => replies.length, { message: 'the answer to an unknown action' }).toBeGreaterThan(0);
      expect(replies[0]).toMatchObject({
        type: 'Error',
        error: { code: 'UNKNOWN_ACTION', message: expect.stringContaining('"subscribe" or "unsubscribe"'), details: { actions: ['subscribe', 'unsubscribe'] } },
      });
    } finally {
      socket.close();
    }
  });
});
