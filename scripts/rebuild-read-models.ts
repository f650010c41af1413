/**
 * Rebuilds the PostgreSQL read models from the event log:
 *
 *   DATABASE_URL=postgres://… npm run rebuild-read-models -- --table <event log table> [--endpoint <DynamoDB URL>]
 *
 * The database is migrated first, so an empty one works. The read models are incomplete while this runs: disable
 * the stream projector's event source mapping first and enable it afterwards (it catches up from the stream, and
 * its records at or below what the rebuild wrote are ignored). Telemetry samples are kept, see PgReadModelWriter.
 * `--endpoint` points at DynamoDB Local (or another endpoint); AWS credentials and region come from the usual chain.
 */
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import { DynamoEventLog } from '../functions/adapters/dynamo-event-log.js';
import { migrate } from '../functions/adapters/pg-migrations.js';
import { PgReadModelWriter, TelemetryRetentionEnv } from '../functions/adapters/pg-read-models.js';
import { rebuildReadModels, type RebuildProgress } from '../functions/app/rebuild-read-models.js';
import { createPool } from '../functions/platform/database.js';
import { ConfigurationError, DatabaseEnv, loadEnv } from '../functions/platform/env.js';
import { LOCAL_AWS } from '../local/dynamodb-local.js';

const USAGE = 'usage: npm run rebuild-read-models -- --table <event log table> [--endpoint <DynamoDB URL>] [--chunk-size <n>]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      table: { type: 'string' },
      endpoint: { type: 'string' },
      'chunk-size': { type: 'string', default: '1000' },
    },
  });
  if (!values.table) throw new UsageError(`--table is required\n${USAGE}`);
  const chunkSize = Number(values['chunk-size']);
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new UsageError(`--chunk-size must be a positive integer\n${USAGE}`);
  const env = loadEnv(z.intersection(DatabaseEnv, TelemetryRetentionEnv));

  const client = new DynamoDBClient(values.endpoint ? localClientConfig(values.endpoint) : {});
  const pool = createPool(env);
  try {
    const applied = await migrate(pool);
    if (applied.length > 0) console.log(`Applied migrations: ${applied.join(', ')}`);
    const log = new DynamoEventLog({ client, tableName: values.table });
    const writer = new PgReadModelWriter(pool, { telemetryRetentionDays: env.TELEMETRY_RETENTION_DAYS });
    console.log(`Rebuilding the read models from ${values.table}…`);
    let lastPrint = 0;
    const done = await rebuildReadModels(log, writer, {
      chunkSize,
      onProgress: (progress) => {
        // Once a second is enough to see it move without flooding a terminal.
        if (progress.elapsedMs - lastPrint < 1000) return;
        lastPrint = progress.elapsedMs;
        console.log(describe(progress));
      },
    });
    console.log(`Done: ${describe(done)}`);
  } finally {
    client.destroy();
    await pool.end();
  }
}

/** DynamoDB Local accepts any credentials; use the environment's when it has some. */
function localClientConfig(endpoint: string) {
  const hasCredentials = process.env.AWS_ACCESS_KEY_ID !== undefined || process.env.AWS_PROFILE !== undefined;
  return {
    endpoint,
    region: process.env.AWS_REGION ?? LOCAL_AWS.region,
    ...(hasCredentials ? {} : { credentials: LOCAL_AWS.credentials }),
  };
}

function describe({ events, heads, elapsedMs }: RebuildProgress): string {
  const rate = elapsedMs > 0 ? Math.round((events / elapsedMs) * 1000) : 0;
  return `${events} events, ${heads} telemetry heads in ${(elapsedMs / 1000).toFixed(1)} s (${rate} events/s)`;
}

class UsageError extends Error {}

main().catch((error: unknown) => {
  // A wrong command line or environment needs its message, anything else its stack too.
  console.error(error instanceof UsageError || error instanceof ConfigurationError ? error.message : error);
  process.exitCode = 1;
});
