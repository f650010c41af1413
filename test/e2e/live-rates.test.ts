import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { LiveMessage, RobotsUpdated, SubscriptionAck } from '../../schemas/index.js';
import {
  connectLiveClient,
  freePorts,
  freshStateDir,
  removeStateDir,
  startCloudProcess,
  type CloudProcess,
  type LiveClient,
} from '../support/local-cloud-process.js';

/**
 * Telemetry rates on the local cloud process, with its simulated robots: a dashboard that subscribes with
 * `"telemetry": "1s"` gets RobotsUpdated (from stream-coalescer on its own stream poller with a 1 s batching window)
 * and no RobotTelemetry, while a raw dashboard keeps getting RobotTelemetry; both get the robots' events.
 */
const ROBOTS = 2;

let stateDir: string;
let cloud: CloudProcess;
let raw: LiveClient;
let rated: { socket: WebSocket; messages: Record<string, unknown>[] };

beforeAll(async () => {
  stateDir = await freshStateDir();
  cloud = await startCloudProcess({ stateDir, ports: await freePorts(), robots: ROBOTS });
  raw = await connectLiveClient(cloud.endpoints);
  const token = (await readFile(cloud.endpoints.tokens.operator, 'utf8')).trim();
  const socket = new WebSocket(`${cloud.endpoints.webSocketUrl}?token=${encodeURIComponent(token)}`);
  const messages: Record<string, unknown>[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(String(data)) as Record<string, unknown>));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['*'], telemetry: '1s' }));
  rated = { socket, messages };
}, 180_000);

afterAll(async () => {
  raw?.close();
  rated?.socket.close();
  await cloud?.stop();
  await removeStateDir(stateDir);
});

describe('telemetry rates on the local cloud', { timeout: 120_000 }, () => {
  it('a 1 s dashboard gets every robot’s view in RobotsUpdated and no RobotTelemetry; a raw one gets RobotTelemetry', async () => {
    // The rate is acknowledged
    await expect
      .poll(() => rated.messages.find((m) => m.type === 'Subscribed'), { message: 'the 1 s subscribe acknowledged', timeout: 30_000 })
      .toBeDefined();
    expect(SubscriptionAck.parse(rated.messages.find((m) => m.type === 'Subscribed'))).toEqual({ type: 'Subscribed', robotIds: ['*'], telemetry: '1s' });

    // Then the 1 s dashboard sees every simulated robot online with telemetry, through RobotsUpdated
    const viewed = () => {
      const views = new Map<string, RobotsUpdated['robots'][number]>();
      for (const message of rated.messages.filter((m) => m.type === 'RobotsUpdated')) {
        for (const view of RobotsUpdated.parse(message).robots) views.set(view.robotId, view);
      }
      return [...views.values()].filter((view) => view.status === 'online' && view.telemetry !== null).length;
    };
    await expect.poll(viewed, { message: 'every simulated robot online with telemetry in RobotsUpdated', timeout: 60_000 }).toBe(ROBOTS);
    await expect
      .poll(() => raw.messages.filter((m) => m.type === 'RobotTelemetry').length, { message: 'raw samples on the raw dashboard', timeout: 60_000 })
      .toBeGreaterThan(0);

    // And the 1 s dashboard got no raw sample; each robot message it got is a domain event, also sent to the raw one
    const ratedLive = rated.messages.filter((m) => m.type !== 'RobotsUpdated' && m.type !== 'Subscribed').map((m) => LiveMessage.parse(m));
    expect(ratedLive.filter((m) => m.type === 'RobotTelemetry')).toEqual([]);
    const key = (m: { robotId?: unknown; seq?: unknown; type?: unknown }) => `${String(m.robotId)}:${String(m.seq)}:${String(m.type)}`;
    expect(ratedLive.map(key).filter((k) => !raw.messages.map(key).includes(k)), 'events the raw dashboard has not got').toEqual([]);

    // When an engineer marks a robot failed
    const robotId = (rated.messages.find((m) => m.type === 'RobotsUpdated') as RobotsUpdated).robots[0]!.robotId;
    const token = (await readFile(cloud.endpoints.tokens.engineer, 'utf8')).trim();
    const response = await fetch(`${cloud.endpoints.apiUrl}/robots/${robotId}/fail`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'gripper jammed' }),
    });
    expect(response.status, await response.text()).toBe(200);

    // Then both dashboards get the event, and the 1 s one a view of the robot as failed, without asking the API
    const failedEvent = (messages: Record<string, unknown>[]) => messages.some((m) => m.type === 'RobotMarkedFailed' && m.robotId === robotId);
    await expect.poll(() => failedEvent(raw.messages), { message: 'RobotMarkedFailed on the raw dashboard' }).toBe(true);
    await expect.poll(() => failedEvent(rated.messages), { message: 'RobotMarkedFailed on the 1 s dashboard' }).toBe(true);
    await expect
      .poll(
        () =>
          rated.messages
            .filter((m) => m.type === 'RobotsUpdated')
            .flatMap((m) => (m as RobotsUpdated).robots)
            .filter((view) => view.robotId === robotId)
            .at(-1)?.lifecycle,
        { message: 'the 1 s dashboard’s newest view of the robot' },
      )
      .toBe('failed');
  });
});
