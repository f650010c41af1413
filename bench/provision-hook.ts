/**
 * `npm run bench:provision -- --hook-only [--robots 200] [--allowance N] [--endpoint http://…]`: the pre-provisioning
 * hook alone, measured apart from MQTT and the CA. DynamoDB Local (started here unless --endpoint names one) holds a
 * fresh factory table and event log; a batch of `--robots` serials is registered with its claim certificate; then
 * after a warm-up of 20 sequential claims on another batch (not measured), every claim at once calls the hook use case (functions/app/provisioning/pre-provisioning-hook.ts) exactly as the
 * Lambda and the local IoT Core do. Prints p50/p99/max of the hook, DynamoDB round trips per call by operation, the
 * transactions cancelled by TransactionConflict (claims contending on the batch's counter), and the outcomes.
 * With --allowance below --robots, the surplus must come back HOOK_DENIED_BATCH_EXHAUSTED (exit 1 otherwise).
 */
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoFactoryRegistry, DynamoProvisioningClaims } from '../functions/adapters/dynamo-factory-registry.js';
import { preProvisioningHook, type HookResult } from '../functions/app/provisioning/pre-provisioning-hook.js';
import { registerSerials } from '../functions/app/provisioning/register-serials.js';
import { LOCAL_AWS, startDynamoDbLocal, type DynamoDbLocal } from '../local/dynamodb-local.js';
import { countRequests } from './dynamo-requests.js';
import { createEventLogTable, createFactoryTable } from '../local/tables.js';

export interface HookBenchOptions {
  readonly robots: number;
  readonly allowance: number;
  readonly endpoint?: string | undefined;
}

const percentile = (values: readonly number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};
/** Claims made (sequentially, on another batch) before measuring. */
const WARM_UP_CLAIMS = 20;

/** What IoT sends the hook (documented input) for a robot of the batch with its fresh certificate. */
const hookInput = (claimCertificateId: string, serial: string) => ({
  claimCertificateId,
  certificateId: randomUUID().replaceAll('-', ''),
  certificatePem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  templateArn: 'arn:aws:iot:eu-west-1:000000000000:provisioningtemplate/heartbeat-claim',
  clientId: `claim-${serial}`,
  parameters: { SerialNumber: serial, Model: 'lekiwi' },
});
const ms = (value: number) => (Number.isFinite(value) ? `${value.toFixed(0)} ms` : '-');

export async function runHookBench(options: HookBenchOptions): Promise<number> {
  let dynamo: DynamoDbLocal | undefined;
  const endpoint = options.endpoint ?? (dynamo = await startDynamoDbLocal()).endpoint;
  const client = new DynamoDBClient({ ...LOCAL_AWS, endpoint });
  try {
    const suffix = randomUUID().slice(0, 8);
    const factoryTable = `bench-factory-${suffix}`;
    const eventLogTable = `bench-event-log-${suffix}`;
    await createFactoryTable(client, factoryTable);
    await createEventLogTable(client, eventLogTable);
    const registry = new DynamoFactoryRegistry({ client, tableName: factoryTable });
    const claimCertificateId = `bench-claim-${suffix}`;
    const serials = Array.from({ length: options.robots }, (_, index) => `HB${String(index + 1).padStart(6, '0')}`);
    await registerSerials(registry, {
      batchId: 'HOOK-BENCH',
      model: 'lekiwi',
      serials,
      allowance: options.allowance,
      claimCertificateIds: [claimCertificateId],
      now: () => new Date(),
    });
    process.stdout.write(
      `Hook only: ${options.robots} concurrent claims on a batch allowing ${options.allowance}, DynamoDB Local at ${endpoint}\n`,
    );

    const claims = new DynamoProvisioningClaims({ client, factoryTable, eventLogTable });
    // Warm-up, not measured: DynamoDB Local's JVM compiles its paths on the first requests (≈ 1 s each when cold).
    const warmSerials = Array.from({ length: WARM_UP_CLAIMS }, (_, index) => `HW${String(index + 1).padStart(6, '0')}`);
    await registerSerials(registry, { batchId: 'HOOK-WARM-UP', model: 'lekiwi', serials: warmSerials, claimCertificateIds: [claimCertificateId], now: () => new Date() });
    for (const serial of warmSerials) await preProvisioningHook({ claims, now: () => new Date() }, hookInput(claimCertificateId, serial));
    const counter = countRequests(client);
    const timings: number[] = [];
    const started = performance.now();
    const results = await Promise.allSettled(
      serials.map(async (serial): Promise<HookResult> => {
        const begun = performance.now();
        const result = await preProvisioningHook(
          { claims, now: () => new Date() },
          hookInput(claimCertificateId, serial),
        );
        timings.push(performance.now() - begun);
        return result;
      }),
    );
    const wall = performance.now() - started;
    const { byOperation, conflicts } = counter.snapshot();

    const outcomes = new Map<string, number>();
    let attempts = 0;
    for (const result of results) {
      const key =
        result.status === 'rejected'
          ? `error ${(result.reason as Error).name}`
          : result.value.decision.allow
            ? 'admitted'
            : `refused ${result.value.decision.reason}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      if (result.status === 'fulfilled') attempts += result.value.decision.attempts;
    }
    const roundTrips = [...byOperation.values()].reduce((sum, count) => sum + count, 0);
    const batch = await registry.readBatch('HOOK-BENCH');
    const lines = [
      '',
      `claims                       ${options.robots} (allowance ${options.allowance})`,
      ...[...outcomes].map(([outcome, count]) => `${outcome.padEnd(29)}${count}`),
      `batch claimed                ${batch?.claimed ?? '?'}`,
      `hook p50                     ${ms(percentile(timings, 50))}`,
      `hook p99                     ${ms(percentile(timings, 99))}`,
      `hook max                     ${ms(Math.max(...timings))}`,
      `all claims answered in       ${ms(wall)}`,
      `attempts per call            ${(attempts / options.robots).toFixed(2)}`,
      `DynamoDB round trips / call  ${(roundTrips / options.robots).toFixed(2)} (${[...byOperation].map(([operation, count]) => `${operation} ${count}`).join(', ')})`,
      `TransactionConflict cancels  ${conflicts}`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
    const expectedAdmitted = Math.min(options.robots, options.allowance);
    const ok = outcomes.get('admitted') === expectedAdmitted && batch?.claimed === expectedAdmitted;
    if (!ok) process.stderr.write(`Expected exactly ${expectedAdmitted} admitted and claimed.\n`);
    return ok ? 0 : 1;
  } finally {
    client.destroy();
    await dynamo?.stop();
  }
}
