import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DeleteTableCommand, DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DynamoFactoryRegistry, DynamoProvisioningClaims } from '../../functions/adapters/dynamo-factory-registry.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { preProvisioningHook } from '../../functions/app/provisioning/pre-provisioning-hook.js';
import { registerSerials } from '../../functions/app/provisioning/register-serials.js';
import { createTestFactoryTable, hookInput } from '../support/factory.js';
import { createTestEventLog, dynamoClient } from '../support/dynamo.js';
import { connectedEvent } from '../support/lifecycle-events.js';

/** `npm run factory -- …` as the factory runs it: its own process (node + tsx), DynamoDB Local behind it. */
const run = promisify(execFile);
let table: Awaited<ReturnType<typeof createTestFactoryTable>>;
let registry: DynamoFactoryRegistry;
let dir: string;

async function factory(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/factory.ts', ...args], {
      env: { ...process.env, LOCAL_STATE_DIR: join(dir, 'no-local-cloud'), ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}
const at = () => ['--endpoint', inject('dynamoEndpoint'), '--table', table.tableName];

beforeAll(async () => {
  table = await createTestFactoryTable();
  registry = new DynamoFactoryRegistry({ client: table.client, tableName: table.tableName });
  dir = await mkdtemp(join(tmpdir(), 'factory-cli-'));
});

afterAll(async () => {
  await table.drop();
  await rm(dir, { recursive: true, force: true });
});

describe('factory CLI', () => {
  it('registers --serials, then again from a CSV without touching what is there; status lists them', async () => {
    const first = await factory(['register', '--batch', 'B-2026-12', '--model', 'lekiwi', '--serials', 'CL0001,CL0002', ...at()]);
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toContain('Batch B-2026-12 (lekiwi): 2 registered, 0 already registered, 0 conflicting, 0 failed.');
    expect(first.stderr).toContain('2/2');

    const csv = join(dir, 'serials.csv');
    await writeFile(csv, 'serial,model\n# line 3 of the sheet\nCL0002,lekiwi\nCL0003,lekiwi\n\n');
    const second = await factory(['register', '--batch', 'B-2026-12', '--model', 'lekiwi', '--csv', csv, ...at()]);
    expect(second.stdout).toContain('1 registered, 1 already registered');
    expect(second.stdout).toContain('Allowance 3 robots (follows the registered serials), 3 serials registered, 0 claimed.');

    const status = await factory(['status', '--batch', 'B-2026-12', ...at()]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('3 serials — 3 registered, 0 failed, 0 provisioned (offline), 0 online, 0 retired');
    expect(status.stdout).toMatch(/CL0003\s+lekiwi-CL0003\s+registered\s+\?/);

    const json = JSON.parse((await factory(['status', '--batch', 'B-2026-12', '--json', ...at()])).stdout) as {
      serials: { serial: string }[];
    };
    expect(json.serials.map((record) => record.serial)).toEqual(['CL0001', 'CL0002', 'CL0003']);
  });

  it('status shows per serial: online, provisioned (certificate, when), failed with the hook\'s reason or the robot\'s own report', { timeout: 90_000 }, async () => {
    const events = await createTestEventLog(table.client);
    try {
      const log = new DynamoEventLog({ client: table.client, tableName: events.tableName });
      const now = () => new Date();
      await registerSerials(registry, { batchId: 'ST', model: 'lekiwi', serials: ['ST0001', 'ST0002', 'ST0003', 'ST0004'], allowance: 2, claimCertificateIds: ['claim-cert-batch-a'], now });
      const claims = new DynamoProvisioningClaims({ client: table.client, factoryTable: table.tableName, eventLogTable: events.tableName });
      const hook = (serial: string, certificateId: string) => preProvisioningHook({ claims, now }, hookInput({ SerialNumber: serial }, certificateId));
      expect((await hook('ST0001', 'a'.repeat(64))).decision.allow).toBe(true);
      expect((await hook('ST0002', 'b'.repeat(64))).decision.allow).toBe(true);
      expect((await hook('ST0003', 'c'.repeat(64))).decision).toMatchObject({ allow: false, reason: 'HOOK_DENIED_BATCH_EXHAUSTED' });
      await executeRobotCommand(log, 'lekiwi-ST0001', { type: 'RecordPresence', presence: connectedEvent('lekiwi-ST0001', 1, Date.now()) }, { now });
      await executeRobotCommand(
        log,
        'lekiwi-ST0002',
        {
          type: 'RecordAgentEvent',
          event: { eventId: 'first-boot-0001', occurredAt: new Date(Date.now() + 1000).toISOString(), type: 'ProvisioningFailed', data: { serial: 'ST0002', reason: 'CLOCK_SKEW' } },
        },
        { now },
      );

      const status = await factory(['status', '--batch', 'ST', ...at(), '--event-log-table', events.tableName]);

      expect(status.code).toBe(0);
      expect(status.stdout).toContain('4 serials — 1 registered, 1 failed, 1 provisioned (offline), 1 online, 0 retired. Allowance 2, claimed 2.');
      expect(status.stdout).toMatch(/ST0001\s+lekiwi-ST0001\s+online\s+yes\s+aaaaaaaaaaaa…\s+\S+Z\s+-/);
      expect(status.stdout).toMatch(/ST0002\s+lekiwi-ST0002\s+provisioned\s+no\s+bbbbbbbbbbbb…\s+\S+Z\s+CLOCK_SKEW \(robot, /);
      expect(status.stdout).toMatch(/ST0003\s+lekiwi-ST0003\s+failed\s+no\s+-\s+-\s+HOOK_DENIED_BATCH_EXHAUSTED \(hook, /);
      expect(status.stdout).toMatch(/ST0004\s+lekiwi-ST0004\s+registered\s+no\s+-\s+-\s+-/);
      const json = JSON.parse((await factory(['status', '--batch', 'ST', '--json', ...at(), '--event-log-table', events.tableName])).stdout) as {
        counts: Record<string, number>;
        serials: { serial: string; stage: string; lastFailure: { source: string; reason: string } | null }[];
      };
      expect(json.counts).toEqual({ registered: 1, failed: 1, provisioned: 1, online: 1, retired: 0 });
      expect(json.serials.map((serial) => [serial.serial, serial.stage, serial.lastFailure?.reason ?? null])).toEqual([
        ['ST0001', 'online', null],
        ['ST0002', 'provisioned', 'CLOCK_SKEW'],
        ['ST0003', 'failed', 'HOOK_DENIED_BATCH_EXHAUSTED'],
        ['ST0004', 'registered', null],
      ]);
    } finally {
      await events.drop();
    }
  });

  it('writes nothing when any serial is bad, naming each line', async () => {
    const csv = join(dir, 'bad.csv');
    await writeFile(csv, 'BD0001\nbad serial!\nBD0001\n');
    const result = await factory(['register', '--batch', 'BAD', '--model', 'lekiwi', '--csv', csv, ...at()]);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('bad.csv line 2: serial "bad serial!" must be');
    expect(result.stderr).toContain('bad.csv line 3: serial BD0001 is listed twice (first at bad.csv line 1)');
    expect(await registry.readSerial('BD0001')).toBeUndefined();
  });

  it('retires a serial; retiring it again or an unknown one says so', async () => {
    await factory(['register', '--batch', 'RT', '--model', 'xle', '--serials', 'XR0001', ...at()]);

    const retired = await factory(['retire', '--serial', 'XR0001', ...at()]);
    const again = await factory(['retire', '--serial', 'XR0001', ...at()]);
    const unknown = await factory(['retire', '--serial', 'NOPE01', ...at()]);

    expect(retired).toMatchObject({ code: 0 });
    expect(retired.stdout).toContain('Retired XR0001 (xle-XR0001)');
    expect(again.stdout).toContain('was already retired');
    expect(unknown).toMatchObject({ code: 1 });
    expect(unknown.stderr).toContain('Serial NOPE01 is not registered');
    expect(await registry.readSerial('XR0001')).toMatchObject({ state: 'retired' });
  });

  it('finds the running local cloud from its endpoints.json and creates its factory table', async () => {
    const stateDir = join(dir, 'local');
    const tableName = `factory-local-${randomUUID()}`;
    await rm(stateDir, { recursive: true, force: true });
    await mkdir(stateDir, { recursive: true });
    await writeFile(join(stateDir, 'endpoints.json'), JSON.stringify({ dynamodbEndpoint: inject('dynamoEndpoint') }));
    try {
      const result = await factory(['register', '--batch', 'LOCAL', '--model', 'lekiwi', '--serials', 'LC0001', '--table', tableName], {
        LOCAL_STATE_DIR: stateDir,
      });
      expect(result.stderr).toContain('local cloud');
      expect(result.code).toBe(0);
      const local = new DynamoFactoryRegistry({ client: dynamoClient(), tableName });
      expect(await local.readSerial('LC0001')).toMatchObject({ batchId: 'LOCAL', state: 'registered' });
    } finally {
      await dynamoClient().send(new DeleteTableCommand({ TableName: tableName })).catch(() => undefined);
    }
  });

  it('gives clear errors: no table anywhere, a missing option, a table that does not exist', async () => {
    const nowhere = await factory(['status', '--batch', 'X'], { FACTORY_TABLE: '' });
    expect(nowhere).toMatchObject({ code: 1 });
    expect(nowhere.stderr).toContain('No local cloud is running');

    const missing = await factory(['register', '--model', 'lekiwi', '--serials', 'A1', ...at()]);
    expect(missing).toMatchObject({ code: 2 });
    expect(missing.stderr).toContain('--batch is required.');

    const noTable = await factory(['status', '--batch', 'X', '--endpoint', inject('dynamoEndpoint'), '--table', 'no-such-factory']);
    expect(noTable).toMatchObject({ code: 1 });
    expect(noTable.stderr).toContain('The factory table no-such-factory does not exist');
    await expect(dynamoClient().send(new DescribeTableCommand({ TableName: 'no-such-factory' }))).rejects.toThrow();
  });
});
