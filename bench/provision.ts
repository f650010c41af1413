/**
 * `npm run bench:provision [-- --robots 200]`: a factory line's worth of bare robots powering on at once. The local
 * cloud runs in this process (so the broker's RegisterThing log, with the pre-provisioning hook's time, can be read);
 * the batch's serials are registered and its claim issued; then every robot at once, as an mqtt.js client doing AWS's
 * documented flow (test/support/claim-robot.ts, not the agent): its own EC key and CSR, CreateCertificateFromCsr,
 * RegisterThing, and a connection as `<model>-<serial>` with its own certificate, retrying what is transient.
 * Prints the success rate, power-on → online (RobotConnected recorded in the robot's event log) p50/p99, the hook's
 * p50/p99 and the retries. Aim: 100 % provisioned, hook p99 ≤ 500 ms.
 * `--hook-only` measures the hook alone (bench/provision-hook.ts).
 */
import '../local/process-env.js';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { MqttClient } from 'mqtt';
import { DynamoEventLog } from '../functions/adapters/dynamo-event-log.js';
import { DynamoFactoryRegistry } from '../functions/adapters/dynamo-factory-registry.js';
import { registerSerials } from '../functions/app/provisioning/register-serials.js';
import { openOrIssueLocalClaim } from '../local/claim-certificates.js';
import { startLocalCloud } from '../local/cloud.js';
import { LOCAL_AWS } from '../local/dynamodb-local.js';
import { provisioningTemplateName } from '../schemas/provisioning.js';
import { provisionByClaim, ProvisioningRejected } from '../test/support/claim-robot.js';
import { runHookBench } from './provision-hook.js';
import { freePorts, freshStateDir, removeStateDir, waitFor } from '../test/support/local-cloud-process.js';

const { values } = parseArgs({
  options: {
    robots: { type: 'string', default: '200' },
    'keep-state': { type: 'boolean', default: false },
    /** The hook alone against DynamoDB Local (bench/provision-hook.ts): no MQTT, no CA. */
    'hook-only': { type: 'boolean', default: false },
    allowance: { type: 'string' },
    endpoint: { type: 'string' },
  },
});
const robots = Number(values.robots);
if (!Number.isInteger(robots) || robots < 1 || robots > 5_000) {
  process.stderr.write('--robots must be a whole number from 1 to 5000\n');
  process.exit(2);
}
if (values['hook-only']) {
  const allowance = values.allowance === undefined ? robots : Number(values.allowance);
  if (!Number.isInteger(allowance) || allowance < 0) {
    process.stderr.write('--allowance must be a whole number ≥ 0\n');
    process.exit(2);
  }
  process.exit(await runHookBench({ robots, allowance, endpoint: values.endpoint }));
}

const percentile = (values: readonly number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};
const ms = (value: number) => (Number.isFinite(value) ? `${value.toFixed(0)} ms` : '-');
const BATCH = 'BENCH';

const stateDir = await freshStateDir();
const ports = await freePorts();
const hookMs: number[] = [];
const refusals = new Map<string, number>();
process.stdout.write(`Provisioning storm: ${robots} bare robots against the local cloud (state ${stateDir})\n`);
const cloud = await startLocalCloud({
  stateDir,
  httpPort: ports.http,
  wsPort: ports.ws,
  mqttPort: ports.mqtt,
  log: (entry) => {
    if (typeof entry.message === 'string' && entry.message.startsWith('RegisterThing') && typeof entry.hookMs === 'number') {
      hookMs.push(entry.hookMs);
      if (entry.allowed === false) refusals.set(String(entry.reason), (refusals.get(String(entry.reason)) ?? 0) + 1);
    } else if (entry.level === 'error') {
      process.stderr.write(`${JSON.stringify(entry)}\n`);
    }
  },
});
const clients: MqttClient[] = [];
try {
  const dynamo = new DynamoDBClient({ ...LOCAL_AWS, endpoint: cloud.endpoints.dynamodbEndpoint });
  const registry = new DynamoFactoryRegistry({ client: dynamo, tableName: cloud.endpoints.factoryTable });
  const log = new DynamoEventLog({ client: dynamo, tableName: cloud.endpoints.eventLogTable });
  const serials = Array.from({ length: robots }, (_, index) => `BN${String(index + 1).padStart(6, '0')}`);
  const claim = await openOrIssueLocalClaim(stateDir, BATCH);
  await registerSerials(registry, { batchId: BATCH, model: 'lekiwi', serials, claimCertificateIds: [claim.certificateId], now: () => new Date() });
  const endpoint = { host: '127.0.0.1', port: cloud.endpoints.mqttPort, caPem: cloud.ca.certificatePem };
  process.stdout.write(`Registered ${robots} serials in batch ${BATCH} and issued its claim; powering them all on…\n`);

  const poweredOnAt = new Map<string, number>();
  const started = performance.now();
  const outcomes = await Promise.allSettled(
    serials.map(async (serial) => {
      poweredOnAt.set(`lekiwi-${serial}`, Date.now());
      const robot = await provisionByClaim({ endpoint, claim, serial, model: 'lekiwi', templateName: provisioningTemplateName(), attempts: 8, timeoutMs: 30_000 });
      clients.push(robot.client);
      return robot;
    }),
  );
  const provisioned = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
  const failures = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as Error] : []));
  const retries = provisioned.reduce((sum, robot) => sum + robot.retries, 0);
  process.stdout.write(`All robots answered in ${ms(performance.now() - started)}; waiting for their RobotConnected in the event log…\n`);

  // Online = RobotConnected recorded in the robot's log (the same clock as powering on: this process).
  const onlineAt = new Map<string, number>();
  await waitFor(
    async () => {
      for (const robot of provisioned) {
        if (onlineAt.has(robot.thingName)) continue;
        const { events } = await log.readEvents(robot.thingName);
        const connected = events.find((recorded) => recorded.event.type === 'RobotConnected');
        if (connected) onlineAt.set(robot.thingName, Date.parse(connected.recordedAt));
      }
      return onlineAt.size === provisioned.length;
    },
    { timeoutMs: 120_000, what: 'every provisioned robot online in the event log', describe: () => `${onlineAt.size}/${provisioned.length} online` },
  );
  let recordedProvisioned = 0;
  for (const robot of provisioned) {
    const { events } = await log.readEvents(robot.thingName);
    if (events.some((recorded) => recorded.event.type === 'RobotProvisioned')) recordedProvisioned++;
  }
  const powerOnToOnline = provisioned.map((robot) => onlineAt.get(robot.thingName)! - poweredOnAt.get(robot.thingName)!);

  const failureReasons = new Map<string, number>();
  for (const failure of failures) {
    const key = failure instanceof ProvisioningRejected ? `${failure.request} ${String(failure.body.errorCode)}` : failure.message.slice(0, 80);
    failureReasons.set(key, (failureReasons.get(key) ?? 0) + 1);
  }
  const lines = [
    '',
    `robots                       ${robots}`,
    `provisioned and online       ${provisioned.length} (${((100 * provisioned.length) / robots).toFixed(1)} %)`,
    `RobotProvisioned in the log  ${recordedProvisioned}`,
    `power-on → online  p50       ${ms(percentile(powerOnToOnline, 50))}`,
    `power-on → online  p99       ${ms(percentile(powerOnToOnline, 99))}`,
    `power-on → online  max       ${ms(Math.max(...powerOnToOnline))}`,
    `hook (RegisterThing) calls   ${hookMs.length}`,
    `hook p50                     ${ms(percentile(hookMs, 50))}`,
    `hook p99                     ${ms(percentile(hookMs, 99))}`,
    `retries                      ${retries}`,
    ...[...refusals].map(([reason, count]) => `hook refusals ${reason}: ${count}`),
    ...[...failureReasons].map(([reason, count]) => `failed: ${reason}: ${count}`),
    '',
  ];
  process.stdout.write(lines.join('\n'));
  process.exitCode = provisioned.length === robots ? 0 : 1;
  dynamo.destroy();
} finally {
  for (const client of clients) client.end(true);
  await cloud.stop();
  if (!values['keep-state']) await removeStateDir(stateDir);
}
