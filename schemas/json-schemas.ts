import { z } from 'zod';
import { ClientMessage, DeploymentChanged, LiveMessage, RobotsUpdated, SubscriptionAck, WebSocketError } from './api.js';
import { AgentEvent, AgentEventBatch, EventsAck, ReportNowCommand, ReportNowReply, TelemetryMessage } from './device.js';
import { LifecycleEvent } from './lifecycle.js';
import { APP, ROBOT_REQUESTS } from './topics.js';

interface MessageSchema {
  readonly schema: z.ZodType;
  readonly title: string;
  readonly description: string;
  /**
   * `input`: what the receiver accepts (messages robots and browsers send; defaults optional, unknown fields as the
   * schema allows). `output`: exactly what the cloud sends (no field beyond those listed).
   */
  readonly io: 'input' | 'output';
}

/**
 * The messages that cross the system's edges, keyed by file name (schemas/json/<name>.schema.json): what robots publish
 * and are sent over MQTT, and what the dashboard sends and is pushed over the live WebSocket. The HTTP API's are in
 * the OpenAPI document (schemas/openapi.ts).
 */
const MESSAGES: Readonly<Record<string, MessageSchema>> = {
  'telemetry-sample': {
    schema: TelemetryMessage,
    title: 'Telemetry sample',
    description: `Published by a robot on dt/${APP}/<thing>/telemetry (or through Basic Ingest). Every metric is optional: the cloud merges samples per metric, so a sample updates only the metrics it carries (each keeps the sampledAt of the sample that carried it, and is replaced only by a value sampled later), and the others keep their last value. requestId is set on the sample that answers a report-now (it is not a metric).`,
    io: 'input',
  },
  'agent-event': {
    schema: AgentEvent,
    title: 'Agent event',
    description: `Published by a robot on dt/${APP}/<thing>/events; eventId is kept across redeliveries.`,
    io: 'input',
  },
  'agent-event-batch': {
    schema: AgentEventBatch,
    title: 'Agent event batch',
    description: `Published by a robot on dt/${APP}/<thing>/events, oldest first; with \`outbox\`, the cloud answers with an events acknowledgement.`,
    io: 'input',
  },
  'events-ack': {
    schema: EventsAck,
    title: 'Events acknowledgement',
    description: `Published by the cloud on cmd/${APP}/<thing>/${ROBOT_REQUESTS.eventsAck} once the events are in the log (or refused for good, with the reason).`,
    io: 'input',
  },
  'report-now-command': {
    schema: ReportNowCommand,
    title: 'Report-now command',
    description: `Published by the cloud on cmd/${APP}/<thing>/${ROBOT_REQUESTS.reportNow} (POST /api/v2/discover): take and publish a telemetry sample now. Other fields are allowed and ignored.`,
    io: 'input',
  },
  'report-now-reply': {
    schema: ReportNowReply,
    title: 'Report-now reply',
    description: `Published by a robot on cmd/${APP}/<thing>/${ROBOT_REQUESTS.reportNow}/reply once the requested sample is out (the sample itself goes on dt/${APP}/<thing>/telemetry).`,
    io: 'input',
  },
  'lifecycle-event': {
    schema: LifecycleEvent,
    title: 'IoT Core lifecycle event',
    description: 'Published by IoT Core on $aws/events/presence/connected|disconnected/<clientId>.',
    io: 'input',
  },
  'live-client-message': {
    schema: ClientMessage,
    title: 'Live feed: client message',
    description:
      'Sent by a client on the live WebSocket (wss://…/live?token=<JWT>): subscribe to or unsubscribe from robots by id, or "*" for the whole fleet; a subscribe may set the connection\'s telemetry rate ("raw" or "1s"). Answered with a subscription acknowledgement or a live error.',
    io: 'input',
  },
  'live-message': {
    schema: LiveMessage,
    title: 'Live feed: robot message',
    description:
      'Pushed by the cloud on the live WebSocket to each connection subscribed to the robot (or to "*"): one per domain event as recorded, and one RobotTelemetry per new sample. `seq` orders a robot\'s messages (a RobotTelemetry after the event of the same seq).',
    io: 'output',
  },
  'live-robots-updated': {
    schema: RobotsUpdated,
    title: 'Live feed: robots updated',
    description:
      'Pushed by the cloud on the live WebSocket, in place of RobotTelemetry, to each connection that subscribed with a coalesced telemetry rate ("1s"): at most one round per interval, with the latest RobotView of every watched robot whose head changed since the last round (each robot once per round), split into messages under 120,000 bytes. Domain events still come as live messages, one each.',
    io: 'output',
  },
  'live-deployment-changed': {
    schema: DeploymentChanged,
    title: 'Live feed: deployment changed',
    description:
      'Pushed by the cloud on the live WebSocket to each connection subscribed to "*": one per committed change of a deployment\'s record (its revision grows by one each), with its state, reason, counts and batches; the robots are read from GET /api/v2/deployments/{id}.',
    io: 'output',
  },
  'live-subscription-ack': {
    schema: SubscriptionAck,
    title: 'Live feed: subscription acknowledgement',
    description: 'The reply on the live WebSocket to an accepted subscribe (Subscribed) or unsubscribe (Unsubscribed).',
    io: 'output',
  },
  'live-error': {
    schema: WebSocketError,
    title: 'Live feed: error',
    description: 'The reply on the live WebSocket to a client message the cloud did not accept; `details` names the bad fields.',
    io: 'output',
  },
};

/** The JSON Schema (draft 2020-12) of each message, keyed by file name. */
export function messageSchemas(): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(MESSAGES).map(([name, { schema, title, description, io }]) => [
      name,
      {
        $id: `https://lekiwi-heartbeat/schemas/${name}.schema.json`,
        title,
        description,
        ...z.toJSONSchema(schema, { target: 'draft-2020-12', io }),
      },
    ]),
  );
}
