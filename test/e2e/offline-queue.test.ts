import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  type Ports,
} from '../support/local-cloud-process.js';
import {
  connectOperator,
  watching,
  sleep,
  startHostStandIn,
  type HostStandIn,
} from '../support/lekiwi-stand-ins.js';

/**
 * The offline queue end to end: the cloud goes away, the robot is driven (real ZeroMQ traffic to a LeKiwi host
 * stand-in, detected by the real agent process), the agent is killed and restarted while still offline and driven
 * again, then the cloud comes back: every teleoperation fact reaches the event log once, in order.
 */
const ROBOT = 'lekiwi-QUEUE01';

let stateDir: string;
let ports: Ports;
let cloud: CloudProcess | undefined;
let host: HostStandIn;
let configFile: string;
const agents: AgentProcess[] = [];

async function driveOneSession(): Promise<void> {
  const operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
  try {
    await expect.poll(() => operator.observations, { message: 'the operator to connect' }).toBeGreaterThan(0);
    await operator.startDriving(30);
    await sleep(400);
    operator.stopDriving();
    // The scorer ends a session 750 ms after the last action; leave it time to report the stop.
    await sleep(1_500);
  } finally {
    operator.close();
  }
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  ports = await freePorts();
  host = await startHostStandIn();
  cloud = await startCloudProcess({ stateDir, ports });
  configFile = await issueCertificate(stateDir, ROBOT, 2);
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  config.reconnect = { minSeconds: 1, maxSeconds: 2 };
  // The restarted agent waits offline for the cloud to come back, with no systemd here to restart it.
  config.firstConnectionBudgetSeconds = 600;
  config.teleoperation = await watching(host);
  await writeFile(configFile, JSON.stringify(config, null, 2));
}, 180_000);

afterAll(async () => {
  for (const agent of agents) if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
  await cloud?.stop();
  await host?.stop();
  await removeStateDir(stateDir);
});

describe('the offline queue, end to end', { timeout: 240_000 }, () => {
  it('events made while the cloud is gone, across a kill -9 and restart of the agent, arrive once and in order', async () => {
    const live = await connectLiveClient(cloud!.endpoints, [ROBOT]);
    agents.push(startAgentProcess(configFile));
    await live.waitFor((message) => message.type === 'RobotConnected', `${ROBOT} connected`, 60_000);
    live.close();

    // The cloud goes away (broker, handlers, everything).
    expect(await cloud!.stop()).toBe(0);
    cloud = undefined;

    // Two sessions while offline, then the agent is killed without a chance to clean up…
    await driveOneSession();
    await driveOneSession();
    agents[0]!.child.kill('SIGKILL');
    await agents[0]!.exited;

    // …restarted, still offline, and the robot is driven once more.
    agents.push(startAgentProcess(configFile));
    await sleep(1_500);
    await driveOneSession();

    // The cloud comes back on the same ports and state: the agent reconnects and drains its queue.
    cloud = await startCloudProcess({ stateDir, ports });
    const teleoperation = async () => {
      const { body } = await getJson(cloud!.endpoints, `/robots/${ROBOT}/events?limit=100`);
      return ((body as { items: { seq: number; eventId: string; type: string; at: string }[] }).items ?? [])
        .filter((event) => event.type.startsWith('Teleoperation'))
        .sort((a, b) => a.seq - b.seq);
    };
    try {
      // The cloud process starting again, the agent reconnecting and draining its queue: longer than the default wait.
      await expect.poll(async () => (await teleoperation()).length, { message: 'six teleoperation events in the log', timeout: 60_000 }).toBeGreaterThanOrEqual(6);
    } catch (error) {
      const { body } = await getJson(cloud.endpoints, `/robots/${ROBOT}/events?limit=100`);
      throw new Error(
        `${(error as Error).message}\nevents: ${JSON.stringify(body).slice(0, 3000)}\nagent: ${agents.at(-1)!.output().slice(-1500)}\ncloud: ${cloud.output().slice(-3000)}`,
      );
    }
    await sleep(2_000); // anything delivered twice would show up by now

    const events = await teleoperation();
    expect(events.map((event) => event.type)).toEqual([
      'TeleoperationStarted',
      'TeleoperationStopped',
      'TeleoperationStarted',
      'TeleoperationStopped',
      'TeleoperationStarted',
      'TeleoperationStopped',
    ]);
    expect(new Set(events.map((event) => event.eventId)).size).toBe(6);
    // In the order they happened on the robot.
    const times = events.map((event) => Date.parse(event.at));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    const { body: robot } = await getJson(cloud.endpoints, `/robots/${ROBOT}`);
    expect(robot).toMatchObject({ status: 'online', teleoperation: { active: false } });
  });
});
