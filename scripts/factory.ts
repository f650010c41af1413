/**
 * The factory CLI (issue 11): the allow-list of serials the pre-provisioning hook admits.
 *
 *   npm run factory -- register --batch B --model lekiwi --serials LK0001,LK0002 [--allowance N]
 *   npm run factory -- register --batch B --model lekiwi --csv serials.csv
 *   npm run factory -- status --batch B [--json] [--event-log-table T]
 *   npm run factory -- retire --serial LK0001
 *   npm run factory -- bundle --batch B --model lekiwi --out dir [--iot-endpoint host --stage s --claim-cert f --claim-key f]
 *
 * Where the table is: `--endpoint`/`--table` when given; else the running local cloud's DynamoDB (its
 * `<LOCAL_STATE_DIR>/endpoints.json`, the table created on first use); else AWS with the usual credential chain and
 * `--table` or FACTORY_TABLE (the stateful stack's factory table).
 */
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DescribeTableCommand, DynamoDBClient, ResourceNotFoundException } from '@aws-sdk/client-dynamodb';
import { BatchId, RobotModel, Serial } from '../schemas/index.js';
import { DynamoEventLog } from '../functions/adapters/dynamo-event-log.js';
import { DynamoFactoryRegistry } from '../functions/adapters/dynamo-factory-registry.js';
import { batchStatus } from '../functions/app/provisioning/batch-status.js';
import { TOPIC_RULES, topicRuleName } from '../schemas/topics.js';
import { BootBundleError, buildBootBundle, caFileName, templateNameFor } from './factory/boot-bundle.js';
import { amazonRootCa1, BundleInputError, claimFromFiles, SYSTEM_AMAZON_ROOT_CA_1, writeBundle } from './factory/bundle-inputs.js';
import { LocalClaimError, openOrIssueLocalClaim } from '../local/claim-certificates.js';
import { certificateIdOf } from '../local/certificate-authority.js';
import {
  registerSerials,
  SerialListError,
  serialsFromCsv,
  serialsFromList,
  validateSerials,
} from '../functions/app/provisioning/register-serials.js';
import { LOCAL_AWS } from '../local/dynamodb-local.js';
import { createFactoryTable, LOCAL_FACTORY_TABLE } from '../local/tables.js';

const USAGE = `Usage: npm run factory -- <command> [options]

Commands:
  register --batch <id> --model <${RobotModel.options.join('|')}> (--serials a,b,c | --csv <file>) [--allowance <n>]
      Adds serials to the allow-list (again: nothing changes). The batch's allowance (the most robots its claim
      certificate admits) is its number of serials, unless --allowance fixes it.
  status --batch <id> [--json] [--event-log-table <name>]
      Each serial of the batch: registered, failed (never admitted, with the hook's reason), provisioned (thing,
      certificate, when), online (from the robots' event log), retired; and the last failure, the hook's refusal or
      the robot's own ProvisioningFailed report. The event log is the local cloud's, else --event-log-table or
      EVENT_LOG_TABLE; without one, online is not shown.
  retire --serial <serial>
      The serial is never admitted again.
  bundle --batch <id> --model <model> --out <dir> [options]
      Writes the batch's boot bundle for Raspberry Pi OS: user-data and meta-data (copy both to the SD card's boot
      partition: user-data carries every other file), agent.json, the batch's claim certificate and key, the root CA,
      heartbeat-agent.service, install.sh, manifest.json. No per-robot secret; the same inputs give the same files.
      AWS:   --iot-endpoint <xxxx-ats.iot.<region>.amazonaws.com> --stage <stage> --claim-cert <file> --claim-key <file>
             [--root-ca <AmazonRootCA1.pem>, default ${SYSTEM_AMAZON_ROOT_CA_1}] [--template <name>]
      Local: without --claim-cert: the local cloud's CA issues the batch's claim once (LOCAL_STATE_DIR/claims/<batch>);
             the broker is --iot-endpoint/--iot-port, else the running local cloud's, else localhost:8883.
      Both:  --node <path> (default /usr/bin/node, Node ≥ 20) --agent <path> (default /opt/heartbeat/agent/main.mjs)
      Records the claim certificate's id on the batch in the factory table (the hook admits claims only from the
      batch's own claim certificates); with no table to reach, it says so and writes the bundle all the same.

Where: --endpoint <DynamoDB URL> --table <name>; default the running local cloud (LOCAL_STATE_DIR, default .local),
else AWS (credentials from the environment) with --table or FACTORY_TABLE.`;

class UsageError extends Error {}
class FactoryError extends Error {}

interface Target {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly where: string;
  /** The fleet's event log (presence, RobotProvisioned, the robots' ProvisioningFailed), when known. */
  readonly eventLogTable?: string | undefined;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        batch: { type: 'string' },
        model: { type: 'string' },
        serials: { type: 'string' },
        csv: { type: 'string' },
        allowance: { type: 'string' },
        serial: { type: 'string' },
        json: { type: 'boolean', default: false },
        endpoint: { type: 'string' },
        table: { type: 'string' },
        'event-log-table': { type: 'string' },
        out: { type: 'string' },
        'iot-endpoint': { type: 'string' },
        'iot-port': { type: 'string' },
        stage: { type: 'string' },
        template: { type: 'string' },
        'claim-cert': { type: 'string' },
        'claim-key': { type: 'string' },
        'root-ca': { type: 'string' },
        node: { type: 'string' },
        agent: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (!command) throw new UsageError('Give a command: register, status, retire or bundle.');
  if (extra.length > 0) throw new UsageError(`Unexpected argument ${extra[0]}.`);

  switch (command) {
    case 'register': {
      const batchId = required(BatchId, values.batch, '--batch');
      const model = required(RobotModel, values.model, '--model');
      if ((values.serials === undefined) === (values.csv === undefined)) throw new UsageError('Give either --serials or --csv.');
      const allowance = values.allowance === undefined ? undefined : Number(values.allowance);
      if (allowance !== undefined && (!Number.isInteger(allowance) || allowance < 0)) {
        throw new UsageError('--allowance must be a whole number ≥ 0.');
      }
      const entries =
        values.serials !== undefined
          ? serialsFromList(values.serials)
          : serialsFromCsv(await readCsv(values.csv!), basename(values.csv!), model);
      const serials = validateSerials(entries);
      const target = await resolveTarget(values);
      return register(target, { batchId, model, serials, allowance });
    }
    case 'status': {
      const batchId = required(BatchId, values.batch, '--batch');
      return status(await resolveTarget(values), batchId, values.json ?? false);
    }
    case 'retire': {
      const serial = required(Serial, values.serial, '--serial');
      return retire(await resolveTarget(values), serial);
    }
    case 'bundle':
      return bundle(values);
    default:
      throw new UsageError(`Unknown command ${command}: use register, status, retire or bundle.`);
  }
}

async function register(
  target: Target,
  request: { batchId: string; model: RobotModel; serials: string[]; allowance: number | undefined },
): Promise<number> {
  const registry = new DynamoFactoryRegistry(target);
  process.stderr.write(`Registering ${request.serials.length} serials in batch ${request.batchId} (${target.where})…\n`);
  const progress = progressPrinter(request.serials.length);
  const report = await registerSerials(registry, { ...request, now: () => new Date(), onProgress: progress });
  const batch = report.batch;
  process.stdout.write(
    `Batch ${request.batchId} (${request.model}): ${report.registered.length} registered, ${report.unchanged.length} already registered, ` +
      `${report.conflicts.length} conflicting, ${report.failed.length} failed.\n`,
  );
  for (const { serial, problem } of report.conflicts) process.stdout.write(`  conflict  ${serial}: ${problem}\n`);
  for (const { serial, error } of report.failed) process.stdout.write(`  failed    ${serial}: ${error}\n`);
  if (batch) {
    process.stdout.write(
      `Allowance ${batch.allowance} robots (${batch.allowanceFixed ? 'fixed' : 'follows the registered serials'}), ` +
        `${batch.registered} serials registered, ${batch.claimed} claimed.\n`,
    );
  }
  if (report.failed.length > 0) process.stdout.write('Run the same command again to retry the failed serials.\n');
  return report.conflicts.length > 0 || report.failed.length > 0 ? 1 : 0;
}

async function status(target: Target, batchId: string, json: boolean): Promise<number> {
  const registry = new DynamoFactoryRegistry(target);
  const log = target.eventLogTable ? new DynamoEventLog({ client: target.client, tableName: target.eventLogTable }) : undefined;
  if (!log) process.stderr.write('No event log named (--event-log-table or EVENT_LOG_TABLE): online is not shown.\n');
  const total = (await registry.readBatch(batchId))?.registered ?? 0;
  const report = await batchStatus(registry, batchId, { log, onProgress: total > 50 ? progressPrinter(total) : undefined });
  if (!report) throw new FactoryError(`Batch ${batchId} is not registered (${target.where}).`);
  const { batch, serials, counts } = report;
  if (json) {
    process.stdout.write(`${JSON.stringify({ batch, counts, serials }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(
    `Batch ${batchId} (${batch.model}): ${serials.length} serials — ${counts.registered} registered, ${counts.failed} failed, ` +
      `${counts.provisioned} provisioned (offline), ${counts.online} online, ${counts.retired} retired. ` +
      `Allowance ${batch.allowance}, claimed ${batch.claimed}.\n`,
  );
  const rows = serials.map((serial) => [
    serial.serial,
    serial.thingName,
    serial.stage,
    serial.online === null ? '?' : serial.online ? 'yes' : 'no',
    serial.certificateId ? `${serial.certificateId.slice(0, 12)}…` : '-',
    serial.provisionedAt ?? '-',
    serial.lastFailure ? `${serial.lastFailure.reason} (${serial.lastFailure.source}, ${serial.lastFailure.at})` : '-',
  ]);
  process.stdout.write(table([['SERIAL', 'THING', 'STAGE', 'ONLINE', 'CERTIFICATE', 'PROVISIONED', 'LAST FAILURE'], ...rows]));
  return 0;
}

async function retire(target: Target, serial: string): Promise<number> {
  const registry = new DynamoFactoryRegistry(target);
  const outcome = await registry.retire(serial, new Date());
  switch (outcome.status) {
    case 'unknown-serial':
      throw new FactoryError(`Serial ${serial} is not registered (${target.where}).`);
    case 'already-retired':
      process.stdout.write(`Serial ${serial} (${outcome.record.thingName}) was already retired on ${outcome.record.retiredAt}.\n`);
      return 0;
    case 'retired':
      process.stdout.write(
        `Retired ${serial} (${outcome.record.thingName}): the pre-provisioning hook admits it no more.` +
          (outcome.record.certificateId ? ` Its certificate ${outcome.record.certificateId} is still as it was.` : '') +
          '\n',
      );
      return 0;
  }
}

interface BundleOptions {
  endpoint?: string | undefined;
  table?: string | undefined;
  batch?: string | undefined;
  model?: string | undefined;
  out?: string | undefined;
  'iot-endpoint'?: string | undefined;
  'iot-port'?: string | undefined;
  stage?: string | undefined;
  template?: string | undefined;
  'claim-cert'?: string | undefined;
  'claim-key'?: string | undefined;
  'root-ca'?: string | undefined;
  node?: string | undefined;
  agent?: string | undefined;
}

/** The boot bundle: inputs read and checked here, files built by scripts/factory/boot-bundle.ts. */
async function bundle(values: BundleOptions): Promise<number> {
  const batchId = required(BatchId, values.batch, '--batch');
  const model = required(RobotModel, values.model, '--model');
  if (!values.out) throw new UsageError('--out <dir> is required.');
  const aws = values['claim-cert'] !== undefined || values['claim-key'] !== undefined;
  const iotPort = values['iot-port'] === undefined ? undefined : Number(values['iot-port']);
  if (iotPort !== undefined && (!Number.isInteger(iotPort) || iotPort < 1 || iotPort > 65_535)) throw new UsageError('--iot-port must be a port number.');
  const common = { nodePath: values.node ?? '/usr/bin/node', agentEntry: values.agent ?? '/opt/heartbeat/agent/main.mjs' };
  let input: Parameters<typeof buildBootBundle>[0];
  try {
    if (aws) {
      if (!values['claim-cert'] || !values['claim-key']) throw new UsageError('Give both --claim-cert and --claim-key (the batch\'s claim from AWS).');
      if (!values['iot-endpoint']) throw new UsageError('--iot-endpoint is required with --claim-cert: the IoT data endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS).');
      if (!values.stage) throw new UsageError('--stage is required with --claim-cert: it names the provisioning template and the telemetry rule.');
      const claim = await claimFromFiles(values['claim-cert'], values['claim-key']);
      input = {
        batchId,
        model,
        target: 'aws',
        iotEndpoint: values['iot-endpoint'],
        iotPort: iotPort ?? 8883,
        templateName: templateNameFor(values.stage, values.template),
        telemetryRule: topicRuleName(TOPIC_RULES.telemetry, values.stage),
        claimCertificatePem: claim.certificatePem,
        claimPrivateKeyPem: claim.privateKeyPem,
        rootCaPem: await amazonRootCa1(values['root-ca']),
        ...common,
        generatedAt: new Date(),
      };
    } else {
      if (values.stage !== undefined || values['root-ca'] !== undefined) {
        throw new UsageError('--stage and --root-ca are for AWS bundles, which need --claim-cert and --claim-key.');
      }
      const stateDir = resolve(process.env.LOCAL_STATE_DIR || '.local');
      const claim = await openOrIssueLocalClaim(stateDir, batchId);
      const running = await localBroker(join(stateDir, 'endpoints.json'));
      process.stderr.write(
        `${claim.issued ? 'Issued' : 'Using'} the local claim certificate of batch ${batchId} (${join(stateDir, 'claims', batchId)}).\n`,
      );
      input = {
        batchId,
        model,
        target: 'local',
        iotEndpoint: values['iot-endpoint'] ?? running?.host ?? 'localhost',
        iotPort: iotPort ?? running?.port ?? 8883,
        templateName: templateNameFor(undefined, values.template),
        telemetryRule: TOPIC_RULES.telemetry.name,
        claimCertificatePem: claim.certificatePem,
        claimPrivateKeyPem: claim.privateKeyPem,
        rootCaPem: claim.caPem,
        ...common,
        generatedAt: new Date(),
      };
    }
    const files = buildBootBundle(input);
    await writeBundle(values.out, files);
    process.stdout.write(
      `Boot bundle of batch ${batchId} (${model}, ${input.target === 'aws' ? 'AWS' : 'local cloud'}, ${input.iotEndpoint}:${input.iotPort}, ` +
        `template ${input.templateName}, CA ${caFileName(input.target)}) in ${resolve(values.out)}:\n` +
        files.map((file) => `  ${file.name}\n`).join('') +
        'Copy user-data and meta-data to the boot partition of each Raspberry Pi OS card (user-data carries the rest).\n',
    );
    await recordClaimOnBatch(values, batchId, model, certificateIdOf(input.claimCertificatePem));
    return 0;
  } catch (error) {
    if (error instanceof BundleInputError || error instanceof BootBundleError || error instanceof LocalClaimError) throw new FactoryError(error.message);
    throw error;
  }
}

/**
 * Records the bundle's claim certificate as the batch's in the factory table: the pre-provisioning hook admits claims
 * only from a batch's own claim certificates (HOOK_DENIED_WRONG_BATCH). The certificate id is AWS IoT's (SHA-256 of
 * the certificate's DER), the one the hook receives as `claimCertificateId`. With no table to reach (no local cloud
 * running, no --table or FACTORY_TABLE), the bundle is still written and the command to record it is printed.
 */
async function recordClaimOnBatch(values: BundleOptions, batchId: string, model: RobotModel, certificateId: string): Promise<void> {
  const stateDir = resolve(process.env.LOCAL_STATE_DIR || '.local');
  const reachable =
    values.endpoint !== undefined || values.table !== undefined || !!process.env.FACTORY_TABLE || (await localBroker(join(stateDir, 'endpoints.json'))) !== undefined;
  if (!reachable) {
    process.stderr.write(
      `No factory table to record the claim certificate ${certificateId} on batch ${batchId}: until it is recorded, the ` +
        'pre-provisioning hook refuses its claims (HOOK_DENIED_WRONG_BATCH). Run this bundle command again with the local ' +
        'cloud running, or with --table <name> (or FACTORY_TABLE) and AWS credentials.\n',
    );
    return;
  }
  const target = await resolveTarget(values);
  const outcome = await new DynamoFactoryRegistry(target).addClaimCertificate(batchId, model, certificateId, new Date());
  if (outcome.status === 'model-conflict') {
    throw new FactoryError(`Batch ${batchId} is a batch of ${outcome.batch.model}, not ${model}: its claim certificate was not recorded (${target.where}).`);
  }
  process.stdout.write(
    `Claim certificate ${certificateId.slice(0, 12)}… ${outcome.status === 'added' ? 'recorded' : 'already recorded'} as batch ${batchId}'s (${target.where}).\n`,
  );
}

async function localBroker(file: string): Promise<{ host: string; port: number } | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  try {
    const endpoints = JSON.parse(text) as { mqttHost?: unknown; mqttPort?: unknown };
    return typeof endpoints.mqttHost === 'string' && typeof endpoints.mqttPort === 'number'
      ? { host: endpoints.mqttHost, port: endpoints.mqttPort }
      : undefined;
  } catch {
    return undefined;
  }
}

function required<T>(schema: { safeParse(value: unknown): { success: true; data: T } | { success: false; error: { issues: { message: string }[] } } }, value: string | undefined, flag: string): T {
  if (value === undefined) throw new UsageError(`${flag} is required.`);
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(`${flag} ${value}: ${parsed.error.issues[0]?.message ?? 'invalid'}.`);
  return parsed.data;
}

async function readCsv(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new FactoryError(`Cannot read the CSV ${file}: ${(error as Error).message}`);
  }
}

/** The explicit endpoint, else the running local cloud's DynamoDB, else AWS. */
async function resolveTarget(values: { endpoint?: string | undefined; table?: string | undefined; 'event-log-table'?: string | undefined }): Promise<Target> {
  const namedEventLog = values['event-log-table'] ?? (process.env.EVENT_LOG_TABLE || undefined);
  if (values.endpoint) {
    const tableName = values.table ?? process.env.FACTORY_TABLE ?? LOCAL_FACTORY_TABLE;
    const client = new DynamoDBClient({ ...awsOrLocalConfig(), endpoint: values.endpoint });
    await ensureTable(client, tableName, values.endpoint, { create: false });
    return { client, tableName, where: `table ${tableName} at ${values.endpoint}`, eventLogTable: namedEventLog };
  }
  const stateDir = resolve(process.env.LOCAL_STATE_DIR || '.local');
  const local = await localEndpoint(join(stateDir, 'endpoints.json'));
  if (local) {
    const tableName = values.table ?? LOCAL_FACTORY_TABLE;
    const client = new DynamoDBClient({ ...LOCAL_AWS, endpoint: local.dynamodbEndpoint });
    await ensureTable(client, tableName, local.dynamodbEndpoint, { create: true });
    return {
      client,
      tableName,
      where: `local cloud, table ${tableName} at ${local.dynamodbEndpoint}`,
      eventLogTable: namedEventLog ?? local.eventLogTable,
    };
  }
  const tableName = values.table ?? process.env.FACTORY_TABLE;
  if (!tableName) {
    throw new FactoryError(
      `No local cloud is running (no ${join(stateDir, 'endpoints.json')}) and no factory table is named: ` +
        'start it (npm start), or pass --table <name> (or set FACTORY_TABLE) with AWS credentials in the environment.',
    );
  }
  const client = new DynamoDBClient({});
  await ensureTable(client, tableName, 'AWS', { create: false });
  return { client, tableName, where: `table ${tableName} in AWS`, eventLogTable: namedEventLog };
}

function awsOrLocalConfig() {
  return process.env.AWS_ACCESS_KEY_ID ? {} : LOCAL_AWS;
}

async function localEndpoint(file: string): Promise<{ dynamodbEndpoint: string; eventLogTable: string | undefined } | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  try {
    const endpoints = JSON.parse(text) as { dynamodbEndpoint?: unknown; eventLogTable?: unknown };
    if (typeof endpoints.dynamodbEndpoint !== 'string') return undefined;
    return {
      dynamodbEndpoint: endpoints.dynamodbEndpoint,
      eventLogTable: typeof endpoints.eventLogTable === 'string' ? endpoints.eventLogTable : undefined,
    };
  } catch {
    throw new FactoryError(`${file} is not JSON: is the local cloud starting? Try again once it says Ready.`);
  }
}

async function ensureTable(client: DynamoDBClient, tableName: string, where: string, options: { create: boolean }): Promise<void> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
  } catch (error) {
    if (error instanceof ResourceNotFoundException) {
      if (!options.create) throw new FactoryError(`The factory table ${tableName} does not exist at ${where}.`);
      await createFactoryTable(client, tableName).catch((createError: Error) => {
        if (createError.name !== 'ResourceInUseException') throw createError;
      });
      return;
    }
    throw new FactoryError(`Cannot reach DynamoDB at ${where}: ${(error as Error).message || (error as Error).name}`, { cause: error });
  }
}

/** Progress on stderr: a live counter on a terminal, a line per tenth otherwise (logs of a factory line's CI). */
function progressPrinter(total: number): (progress: { done: number; total: number }) => void {
  const step = Math.max(1, Math.ceil(total / 10));
  const tty = process.stderr.isTTY;
  return ({ done }) => {
    if (tty) {
      process.stderr.write(`\r  ${done}/${total}`);
      if (done === total) process.stderr.write('\n');
    } else if (done % step === 0 || done === total) {
      process.stderr.write(`  ${done}/${total}\n`);
    }
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => `${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()}\n`).join('');
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`${error.message}\n\n${USAGE}\n`);
    process.exitCode = 2;
  } else if (error instanceof SerialListError) {
    process.stderr.write(`Nothing registered:\n${error.problems.map((problem) => `  ${problem}`).join('\n')}\n`);
    process.exitCode = 2;
  } else if (error instanceof FactoryError) {
    process.stderr.write(`${error.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`factory: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  }
}
