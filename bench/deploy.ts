/**
 * `npm run bench:deploy [-- --robots 100 --size-mb 50]`: a software rollout to a simulated fleet (issue 12's
 * benchmark). The local cloud and its simulated robots run in this process (each the real agent runtime, MQTT link
 * and installer, local/simulated-fleet.ts); releases are made from generated trees in the local artifact store.
 *
 *   1. setup: release 1.0.0 (a tree of --size-mb in many files) and install it everywhere, 25 at a time (not measured);
 *   2. release 2.0.0 changing --change-percent of the files, deployed canary --canary then rolling batches of
 *      --batch-size: wall time, p50/p99 per-robot install time (the robot's own UpdateSucceeded.durationMs, and
 *      UpdateStarted→UpdateSucceeded as recorded), bytes fetched vs a full copy to every robot, success rate;
 *   3. release 3.0.0 (another change) with installs failing on --fail-percent of the robots (spread evenly,
 *      HEARTBEAT_SIM_INSTALL_FAIL=<p>%@3.0.0): the deployment aborts at its threshold; time from DeploymentAborted
 *      (the deployment's record) to the last updated robot's RobotUpdateRolledBack (its log), i.e. back on 2.0.0.
 *
 * Aims (the issue): ≥ 95 % fewer bytes than a full copy, 100 % success without injected faults, the rollback of the
 * updated robots within 60 s. Exits 1 when a phase does not end as it should.
 */
import '../local/process-env.js';
import { createCipheriv, createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDeploymentStore } from '../functions/adapters/dynamo-deployments.js';
import { DynamoEventLog } from '../functions/adapters/dynamo-event-log.js';
import { startLocalCloud, type LocalCloud } from '../local/cloud.js';
import { LOCAL_AWS } from '../local/dynamodb-local.js';
import { startSimulatedFleet, type SimulatedFleet } from '../local/simulated-fleet.js';
import { SIM_INSTALL_FAIL_ENV } from '../local/simulated-install-faults.js';
import { LOCAL_DEPLOYMENTS_TABLE } from '../local/tables.js';
import type { DeploymentView } from '../schemas/deployments.js';
import { releaseTree } from '../scripts/release/release-tree.js';
import { freePorts, freshStateDir, removeStateDir, waitFor } from '../test/support/local-cloud-process.js';

const USAGE = `Usage: npm run bench:deploy -- [--robots 100] [--size-mb 50] [options]

  --robots <n>          simulated robots (default 100)
  --size-mb <mb>        the release tree's size (default 50), in --files files
  --files <n>           files in the tree (default 10 per MB, at least 50)
  --change-percent <p>  files changed by each new release (default 2)
  --canary <n>          canary robots (default 5)
  --batch-size <n>      rolling batch size (default 5)
  --fail-percent <p>    robots whose install of the faulty release fails (default 20; 0 skips that phase)
  --keep-state          keep the state dir (printed) afterwards
  --help, -h            this help`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      robots: { type: 'string', default: '100' },
      'size-mb': { type: 'string', default: '50' },
      files: { type: 'string' },
      'change-percent': { type: 'string', default: '2' },
      canary: { type: 'string', default: '5' },
      'batch-size': { type: 'string', default: '5' },
      'fail-percent': { type: 'string', default: '20' },
      'keep-state': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }));
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const number = (name: keyof typeof values, min: number, max: number, integer = true): number => {
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    process.stderr.write(`--${name} must be a ${integer ? 'whole ' : ''}number from ${min} to ${max}\n\n${USAGE}\n`);
    process.exit(2);
  }
  return value;
};
const robots = number('robots', 1, 1_000);
const sizeMb = number('size-mb', 0.1, 2_000, false);
const files = values.files === undefined ? Math.max(50, Math.round(sizeMb * 10)) : number('files', 1, 100_000);
const changePercent = number('change-percent', 0, 100, false);
const canary = number('canary', 0, 1_000);
const batchSize = number('batch-size', 1, 1_000);
const failPercent = number('fail-percent', 0, 100, false);

const say = (line: string) => process.stdout.write(`${line}\n`);
const percentile = (list: readonly number[], p: number) => {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};
const ms = (value: number) => (Number.isFinite(value) ? `${value.toFixed(0)} ms` : '-');
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MB`;

/** A tree of `files` files totalling `bytes`, deterministic; files in `changed` get other bytes (a new release). */
async function writeTree(dir: string, bytes: number, changed: ReadonlySet<number>, salt: string): Promise<void> {
  const size = Math.max(1, Math.floor(bytes / files));
  for (let i = 0; i < files; i += 1) {
    const path = join(dir, `lerobot/part-${String(Math.floor(i / 100)).padStart(3, '0')}/file-${String(i).padStart(5, '0')}.bin`);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, pseudoRandom(`${i}${changed.has(i) ? salt : ''}`, size));
  }
}
/** `size` bytes that look random, the same for the same seed (AES-CTR keyed by the seed's hash: fast). */
function pseudoRandom(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}
/** `count` files spread over the tree, shifted by `shift` so each release changes others. */
function pick(count: number, shift: number): Set<number> {
  const step = files / Math.max(1, count);
  return new Set(Array.from({ length: count }, (_, k) => (Math.floor(k * step) + shift) % files));
}

/** The robots a deployment updated (those already rolled back among them). */
const updatedOf = (view: DeploymentView) => view.robots.filter((robot) => robot.state === 'succeeded' || robot.state === 'rolled-back').map((robot) => robot.robotId);

const stateDir = await freshStateDir();
const ports = await freePorts();
const faultSpec = `${failPercent}%@3.0.0`;
say(`Deployment benchmark: ${robots} simulated robots, a ${sizeMb} MB tree of ${files} files, ${changePercent} % changed per release (state ${stateDir})`);
let cloud: LocalCloud | undefined;
let fleet: SimulatedFleet | undefined;
let dynamo: DynamoDBClient | undefined;
let ok = true;
try {
  const started = performance.now();
  cloud = await startLocalCloud({
    stateDir,
    httpPort: ports.http,
    wsPort: ports.ws,
    mqttPort: ports.mqtt,
    minKeepAliveSeconds: 1,
    log: (entry) => {
      if (entry.level === 'error') process.stderr.write(`${JSON.stringify(entry)}\n`);
    },
  });
  say(`✓ local cloud (${ms(performance.now() - started)}); starting ${robots} simulated robots (provisioning by claim)…`);
  fleet = await startSimulatedFleet({ cloud, count: robots, say: (line) => say(`  ${line}`), env: failPercent > 0 ? { [SIM_INSTALL_FAIL_ENV]: faultSpec } : {} });
  const { endpoints } = cloud;
  const token = (await readFile(endpoints.tokens.engineer, 'utf8')).trim();
  /** A call to the API as an engineer; a POST carries an Idempotency-Key and is retried when the gateway times out. */
  const api = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<any> => {
    const key = randomUUID();
    for (let attempt = 1; ; attempt += 1) {
      const response = await fetch(`${endpoints.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json', 'idempotency-key': key }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      if ((response.status === 503 || response.status === 504) && attempt < 4) {
        say(`  ${method} ${path}: ${response.status}; asking again (attempt ${attempt + 1})`);
        continue;
      }
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
      return text ? JSON.parse(text) : null;
    }
  };
  dynamo = new DynamoDBClient({ ...LOCAL_AWS, endpoint: endpoints.dynamodbEndpoint });
  const eventLog = new DynamoEventLog({ client: dynamo, tableName: endpoints.eventLogTable });
  const deploymentStore = new DynamoDeploymentStore({ client: dynamo, tableName: LOCAL_DEPLOYMENTS_TABLE });
  const thingNames = fleet.thingNames;

  const robotViews = async (): Promise<{ robotId: string; status: string; software?: { version: string | null } }[]> => {
    const all = [];
    let cursor: string | null = null;
    do {
      const page: { items: any[]; nextCursor: string | null } = await api('GET', `/robots?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      all.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    return all.filter((robot) => thingNames.includes(robot.robotId));
  };
  await waitFor(async () => (await robotViews()).filter((robot) => robot.status === 'online').length === robots, {
    timeoutMs: 300_000,
    what: 'every simulated robot online',
  });
  say(`✓ ${robots} robots online (${ms(performance.now() - started)})`);

  const totalBytes = Math.max(1, Math.floor((sizeMb * 1024 * 1024) / files)) * files;
  const changedFiles = Math.max(1, Math.round((files * changePercent) / 100));
  const release = async (version: string, changed: Set<number>, salt: string) => {
    const dir = join(stateDir, 'trees', version);
    const t = performance.now();
    await writeTree(dir, totalBytes, changed, salt);
    const result = await releaseTree({ dir, version, store: cloud!.artifacts });
    say(`✓ release ${version}: ${result.summary.fileCount} files, ${mb(result.summary.totalBytes)}, ${result.newObjects} new objects (${ms(performance.now() - t)})`);
    return result.summary;
  };

  /** Deploys and waits for a final state, printing each batch as it moves. */
  const deploy = async (version: string, strategy: Record<string, number>, timeoutMs: number): Promise<{ view: DeploymentView; wallMs: number }> => {
    const t = performance.now();
    const created: DeploymentView = await api('POST', '/deployments', { release: version, targets: { robotIds: thingNames }, strategy });
    const id = created.deploymentId;
    say(`  deployment ${id} of ${version}: ${created.batches.length} batches (${created.batches.map((b) => b.robots).join(', ')}), ${created.counts.held} held`);
    let last = '';
    let view = created;
    await waitFor(
      async () => {
        view = await api('GET', `/deployments/${id}`);
        const running = view.batches.filter((b) => b.state === 'running' || b.state === 'done');
        const line = `  ${((performance.now() - t) / 1000).toFixed(1)} s: ${view.state}, batch ${running.length}/${view.batches.length}, ${view.counts.succeeded} succeeded, ${view.counts.failed} failed, ${view.counts.inProgress} in progress`;
        if (line.replace(/^ *[\d.]+ s: /, '') !== last) {
          last = line.replace(/^ *[\d.]+ s: /, '');
          say(line);
        }
        return view.state !== 'running' && view.state !== 'paused';
      },
      { timeoutMs, what: `deployment ${id} to end` },
    );
    return { view, wallMs: performance.now() - t };
  };

  // Phase 1: the base release everywhere (a full copy; setup, not measured).
  say('\n[1/3] setup: the base release to every robot');
  await release('1.0.0', new Set(), '');
  const base = await deploy('1.0.0', { canary: 0, batchSize: 25 }, 1_800_000);
  if (base.view.state !== 'completed') throw new Error(`the base deployment ended ${base.view.state}: ${base.view.reason}`);

  // Phase 2: the measured rollout.
  say(`\n[2/3] release 2.0.0 (${changedFiles} of ${files} files changed): canary ${canary}, then batches of ${batchSize}`);
  await release('2.0.0', pick(changedFiles, 0), 'v2');
  const rollout = await deploy('2.0.0', { canary, batchSize }, 1_800_000);
  const durations: number[] = [];
  const recorded: number[] = [];
  let bytesFetched = 0;
  let succeeded = 0;
  for (const robotId of thingNames) {
    const { events } = await eventLog.readEvents(robotId);
    const mine = events.filter((e) => (e.event.data as { deploymentId?: string }).deploymentId === rollout.view.deploymentId);
    const start = mine.find((e) => e.event.type === 'RobotUpdateStarted');
    const done = mine.find((e) => e.event.type === 'RobotUpdateSucceeded');
    if (!done) continue;
    succeeded += 1;
    const data = done.event.data as { durationMs: number; bytesFetched: number };
    durations.push(data.durationMs);
    bytesFetched += data.bytesFetched;
    if (start) recorded.push(Date.parse(done.recordedAt) - Date.parse(start.recordedAt));
  }
  const fullCopy = totalBytes * robots;
  const saved = 100 * (1 - bytesFetched / fullCopy);
  const successRate = (100 * succeeded) / robots;
  ok &&= rollout.view.state === 'completed' && succeeded === robots;
  const results = [
    '',
    `rollout of 2.0.0               ${rollout.view.state} (${rollout.view.batches.length} batches)`,
    `wall time                      ${(rollout.wallMs / 1000).toFixed(1)} s`,
    `install time (robot) p50       ${ms(percentile(durations, 50))}`,
    `install time (robot) p99       ${ms(percentile(durations, 99))}`,
    `Started→Succeeded (log) p50    ${ms(percentile(recorded, 50))}`,
    `Started→Succeeded (log) p99    ${ms(percentile(recorded, 99))}`,
    `bytes fetched                  ${mb(bytesFetched)} vs ${mb(fullCopy)} for a full copy: ${saved.toFixed(2)} % fewer`,
    `success rate                   ${successRate.toFixed(1)} % (${succeeded}/${robots})`,
  ];

  // Phase 3: a faulty release, the abort, and the way back.
  if (failPercent > 0) {
    say(`\n[3/3] release 3.0.0 failing on ${failPercent} % of the robots (${SIM_INSTALL_FAIL_ENV}=${faultSpec}): canary ${canary}, then batches of ${batchSize}`);
    await release('3.0.0', pick(changedFiles, 1), 'v3');
    const faulty = await deploy('3.0.0', { canary, batchSize }, 900_000);
    const id = faulty.view.deploymentId;
    let abortedAt: number | undefined;
    let parent = faulty.view;
    if (faulty.view.state === 'aborted') {
      const aborted = (await deploymentStore.readEvents(id)).find((event) => event.type === 'DeploymentAborted');
      abortedAt = aborted ? Date.parse(aborted.at) : undefined;
      say(`  aborted: ${faulty.view.reason}`);
      // Robots still installing when it aborted finish; each one that succeeds goes back in a rollback of its own.
      await waitFor(
        async () => {
          parent = await api('GET', `/deployments/${id}`);
          const rolledBack = parent.rollback?.deployments.reduce((sum, d) => sum + d.robots, 0) ?? 0;
          return parent.counts.inProgress === 0 && parent.rollbackDeploymentId !== null && rolledBack === updatedOf(parent).length;
        },
        { timeoutMs: 120_000, what: 'a rollback of every robot the deployment updated' },
      );
    }
    const updated = updatedOf(parent);
    const rollbackIds = parent.rollback?.deployments.map((d) => d.deploymentId) ?? [];
    for (const rollbackId of rollbackIds) {
      say(`  rollback ${rollbackId} of ${updated.length} updated robots to 2.0.0`);
      await waitFor(async () => ((await api('GET', `/deployments/${rollbackId}`)) as DeploymentView).state !== 'running', { timeoutMs: 600_000, what: `rollback ${rollbackId}` });
    }
    let lastBack = Number.NaN;
    let back = 0;
    for (const robotId of updated) {
      const { events } = await eventLog.readEvents(robotId);
      const rolledBack = events.find((e) => e.event.type === 'RobotUpdateRolledBack' && rollbackIds.includes((e.event.data as { deploymentId: string }).deploymentId));
      if (!rolledBack) continue;
      back += 1;
      lastBack = Number.isNaN(lastBack) ? Date.parse(rolledBack.recordedAt) : Math.max(lastBack, Date.parse(rolledBack.recordedAt));
    }
    const onOld = (await robotViews()).filter((robot) => robot.software?.version === '2.0.0').length;
    const counts = faulty.view.counts;
    const notStarted = faulty.view.robots.filter((robot) => robot.state === 'pending' || robot.state === 'canceled').length;
    ok &&= faulty.view.state === 'aborted' && back === updated.length && onOld === robots;
    results.push(
      '',
      `faulty 3.0.0                   ${faulty.view.state}${faulty.view.reason ? `: ${faulty.view.reason}` : ''}`,
      `robots updated, then failed    ${counts.succeeded + counts.rolledBack} updated, ${counts.failed} failed, ${notStarted} never started`,
      `abort → all updated back       ${abortedAt !== undefined && back > 0 ? ms(lastBack - abortedAt) : '-'} (${back}/${updated.length} rolled back to 2.0.0)`,
      `robots on 2.0.0 afterwards     ${onOld}/${robots}`,
    );
  }
  say(results.join('\n'));
  say(`\nwall time of the whole benchmark ${((performance.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  ok = false;
  process.stderr.write(`\nbench:deploy failed: ${(error as Error).stack ?? String(error)}\n`);
} finally {
  await fleet?.stop();
  await cloud?.stop();
  dynamo?.destroy();
  if (values['keep-state']) say(`state kept in ${stateDir}`);
  else await removeStateDir(stateDir);
}
process.exit(ok ? 0 : 1);
