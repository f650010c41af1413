/**
 * `npm run bench:projector [-- --events 100000 --robots 1000 --batch-sizes 100,1000 --seed 1 --unfiltered]`
 *
 * Projects a synthetic fleet history into a PostgreSQL database of its own (on the local server, dropped at the end)
 * through the stream projector's real code path, once per Lambda batch size, then rebuilds it from the log. Only the
 * projector's time counts: generating the history and the stream records is excluded.
 *
 * The stream carries every item write: events, eventId markers and heads. By default the bench drops what the
 * projector ignores (markers, heads without a new sample) before batching, as the FilterCriteria on the deployed
 * event source mapping does (`--unfiltered` keeps them): {"dynamodb":{"NewImage":{"kind":{"S":["event"]}}}} or
 * {"dynamodb":{"NewImage":{"kind":{"S":["head"]},"telemetryChanged":{"BOOL":[true]}}}}.
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { DynamoDBRecord } from 'aws-lambda';
import { matchesAnyFilter, PROJECTED_RECORD_PATTERNS } from '../schemas/stream-filters.js';

// Powertools reads these when first imported (below): no log lines or metric dumps in the figures.
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.POWERTOOLS_TRACE_ENABLED ??= 'false';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    robots: { type: 'string', default: '1000' },
    'batch-sizes': { type: 'string', default: '100,1000' },
    seed: { type: 'string', default: '1' },
    unfiltered: { type: 'boolean', default: false },
  },
});
const events = positiveInteger('events', values.events);
const robots = positiveInteger('robots', values.robots);
const seed = positiveInteger('seed', values.seed);
const batchSizes = values['batch-sizes'].split(',').map((size) => positiveInteger('batch-sizes', size));

const { projectStream } = await import('../functions/adapters/stream-consumers.js');
const { rebuildReadModels } = await import('../functions/app/rebuild-read-models.js');
const { PgReadModelWriter } = await import('../functions/adapters/pg-read-models.js');
const { createTestDatabase } = await import('../test/support/postgres.js');
const { FleetSimulation } = await import('../test/support/fleet-simulation.js');
const { RecordingEventLog } = await import('../test/support/recording-event-log.js');
const { StreamRecords, streamEvent } = await import('../test/support/stream-records.js');

console.log(
  `Projecting ${events} events of ${robots} robots (seed ${seed}), ${values.unfiltered ? 'unfiltered' : 'filtered'} stream; ` +
    `${process.platform}, node ${process.version}`,
);
const projected = (record: DynamoDBRecord) => matchesAnyFilter(record, PROJECTED_RECORD_PATTERNS);
for (const batchSize of batchSizes) {
  const db = await createTestDatabase({ poolSize: 1 });
  try {
    const writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
    const simulation = new FleetSimulation(new RecordingEventLog(), { robots, seed });
    const stream = new StreamRecords();
    let pending: DynamoDBRecord[] = [];
    let projectMs = 0;
    let batches = 0;
    let records = 0;
    const wallStart = performance.now();
    while (simulation.log.eventCount < events || pending.length > 0) {
      while (pending.length < batchSize && simulation.log.eventCount < events) {
        await simulation.step();
        const records = stream.records(simulation.log.takeStream());
        pending.push(...(values.unfiltered ? records : records.filter(projected)));
      }
      const batch = pending.slice(0, batchSize);
      pending = pending.slice(batchSize);
      const started = performance.now();
      const response = await projectStream(streamEvent(batch), writer);
      projectMs += performance.now() - started;
      if (response.batchItemFailures.length > 0) throw new Error(`batch ${batches} failed: ${JSON.stringify(response)}`);
      batches++;
      records += batch.length;
    }
    const wallMs = performance.now() - wallStart;
    const written = await counts(db.pool);
    if (written.events !== simulation.log.eventCount) {
      throw new Error(`projected ${written.events} events, the log holds ${simulation.log.eventCount}`);
    }
    console.log(
      `batch size ${String(batchSize).padStart(5)}: ${rate(written.events, projectMs)} events/s ` +
        `(${rate(records, projectMs)} stream records/s; ${written.events} events, ${written.samples} samples, ` +
        `${records} records in ${batches} batches; projector ${seconds(projectMs)}, total with generation ${seconds(wallMs)})`,
    );

    const rebuilt = await rebuildReadModels(simulation.log, writer);
    console.log(
      `rebuild from the log: ${rate(rebuilt.events, rebuilt.elapsedMs)} events/s ` +
        `(${rebuilt.events} events and ${rebuilt.heads} heads in ${seconds(rebuilt.elapsedMs)})`,
    );
  } finally {
    await db.drop();
  }
}

async function counts(pool: import('pg').Pool) {
  const { rows } = await pool.query<{ events: string; samples: string }>(
    'SELECT (SELECT count(*) FROM robot_events) AS events, (SELECT count(*) FROM telemetry_samples) AS samples',
  );
  return { events: Number(rows[0]!.events), samples: Number(rows[0]!.samples) };
}

function rate(count: number, ms: number): string {
  return Math.round((count / ms) * 1000).toLocaleString('en-US');
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function positiveInteger(name: string, value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return parsed;
}
