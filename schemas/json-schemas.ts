import { z } from 'zod';
import { AgentEvent, AgentEventBatch, EventsAck, TelemetrySample } from './device.js';
import { LifecycleEvent } from './lifecycle.js';
import { APP, ROBOT_REQUESTS } from './topics.js';

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
      description: `Published by a robot on dt/${APP}/<thing>/events, oldest first; with \`outbox\`, the cloud answers with an events acknowledgement.`,
    },
    'events-ack': {
      schema: EventsAck,
      title: 'Events acknowledgement',
      description: `Published by the cloud on cmd/${APP}/<thing>/${ROBOT_REQUESTS.eventsAck} once the events are in the log (or refused for good, with the reason).`,
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
