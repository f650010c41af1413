import { z } from 'zod';
import { AgentEvent, AgentEventBatch, TelemetrySample } from './device.js';
import { LifecycleEvent } from './lifecycle.js';
import { APP } from './topics.js';

/** The JSON Schema of each device-facing message, keyed by file name. */
export function deviceMessageSchemas(): Record<string, unknown> {
  const schemas = {
    'telemetry-sample': {
      schema: TelemetrySample,
      title: 'Telemetry sample',
      description: `Published by a robot on dt/${APP}/<thing>/telemetry (or through Basic Ingest).`,
    },
    'agent-event': {
      schema: AgentEvent,
      title: 'Agent event',
      description: `Published by a robot on dt/${APP}/<thing>/events; eventId is kept across redeliveries.`,
    },
    'agent-event-batch': {
      schema: AgentEventBatch,
      title: 'Agent event batch',
      description: `Published by a robot on dt/${APP}/<thing>/events after being offline: its backlog, oldest first.`,
    },
    'lifecycle-event': {
      schema: LifecycleEvent,
      title: 'IoT Core lifecycle event',
      description: 'Published by IoT Core on $aws/events/presence/connected|disconnected/<clientId>.',
    },
  };
  return Object.fromEntries(
    Object.entries(schemas).map(([name, { schema, title, description }]) => [
      name,
      {
        $id: `https://lekiwi-heartbeat/schemas/${name}.schema.json`,
        title,
        description,
        ...z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' }),
      },
    ]),
  );
}
