import { z } from 'zod';
import { TelemetrySample } from './device.js';
import { AlertSeverity, DOMAIN_EVENT_TYPES, TelemetryMetric } from './events.js';
import { RobotId, RobotModel } from './robot-id.js';

/** DTOs of the HTTP API (`/api/v2`) and the WebSocket API, shared by the handlers and the dashboard. */

export const LIFECYCLES = ['discovered', 'provisioning', 'ready', 'active', 'maintenance', 'offline', 'failed'] as const;
export const Lifecycle = z.enum(LIFECYCLES);
export type Lifecycle = z.infer<typeof Lifecycle>;

export const PresenceStatus = z.enum(['online', 'offline']);
export type PresenceStatus = z.infer<typeof PresenceStatus>;

export const ROLES = ['operator', 'engineer', 'admin'] as const;
export const Role = z.enum(ROLES);
export type Role = z.infer<typeof Role>;

export const ActiveAlertView = z.object({
  metric: TelemetryMetric,
  severity: AlertSeverity,
  value: z.number(),
  threshold: z.number(),
  raisedAt: z.string(),
});
export type ActiveAlertView = z.infer<typeof ActiveAlertView>;

export const RobotView = z.object({
  robotId: RobotId,
  model: RobotModel,
  status: PresenceStatus,
  lifecycle: Lifecycle,
  /** Online, not failed, no active critical alert. */
  healthy: z.boolean(),
  /** Healthy, not teleoperated, not mid-deployment. */
  deployable: z.boolean(),
  registered: z.boolean(),
  connection: z
    .object({ sessionIdentifier: z.string(), ipAddress: z.string().nullable(), since: z.string() })
    .nullable(),
  lastSeenAt: z.string().nullable(),
  teleoperation: z.object({
    active: z.boolean(),
    operatorAddress: z.string().nullable(),
    since: z.string().nullable(),
  }),
  alerts: z.array(ActiveAlertView),
  failure: z.object({ reason: z.string(), by: z.string(), at: z.string() }).nullable(),
  telemetry: TelemetrySample.nullable(),
  lastSeq: z.number().int().nonnegative(),
});
export type RobotView = z.infer<typeof RobotView>;

export const Page = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() });

export const RobotPage = Page(RobotView);
export type RobotPage = z.infer<typeof RobotPage>;

export const EventView = z.object({
  seq: z.number().int().positive(),
  eventId: z.string(),
  type: z.string(),
  version: z.number().int(),
  at: z.string(),
  recordedAt: z.string(),
  data: z.record(z.string(), z.unknown()),
});
export type EventView = z.infer<typeof EventView>;
export const EventPage = Page(EventView);
export type EventPage = z.infer<typeof EventPage>;

export const FleetMetrics = z.object({
  robots: z.number().int(),
  byStatus: z.record(PresenceStatus, z.number().int()),
  byLifecycle: z.record(Lifecycle, z.number().int()),
  byModel: z.record(RobotModel, z.number().int()),
  healthy: z.number().int(),
  deployable: z.number().int(),
  activeTeleoperations: z.number().int(),
  activeAlerts: z.object({ warning: z.number().int(), critical: z.number().int(), total: z.number().int() }),
});
export type FleetMetrics = z.infer<typeof FleetMetrics>;

const limit = z.coerce.number().int().min(1).max(500).default(100);
const cursor = z.string().min(1).max(512).optional();

export const ListRobotsQuery = z
  .object({ status: PresenceStatus.optional(), model: RobotModel.optional(), lifecycle: Lifecycle.optional(), limit, cursor })
  .strict();
export type ListRobotsQuery = z.infer<typeof ListRobotsQuery>;

export const ListEventsQuery = z.object({ limit, cursor }).strict();
export type ListEventsQuery = z.infer<typeof ListEventsQuery>;

export const MarkFailedRequest = z.object({ reason: z.string().trim().min(1).max(500) }).strict();
export const RecoverRequest = z.object({ note: z.string().trim().max(500).optional() }).strict();
/** `POST /api/v2/discover` takes no options (yet): an empty body or `{}`. */
export const DiscoverRequest = z.object({}).strict();

/** The result of a command: the robot as the event log now has it (read models follow within a second). */
export const CommandResult = z.object({
  robot: RobotView,
  appended: z.array(z.object({ seq: z.number().int(), type: z.string(), eventId: z.string() })),
});
export type CommandResult = z.infer<typeof CommandResult>;

/**
 * The answer to `POST /api/v2/discover` (202): every robot online in the read model was asked to report now.
 * `asked` robots got the command, publishing it to `failed` more did not work; the reports arrive on the live feed as
 * `RobotTelemetry` messages.
 */
export const DiscoverResult = z.object({
  requestId: z.uuid(),
  asked: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
});
export type DiscoverResult = z.infer<typeof DiscoverResult>;

export const ApiError = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
export type ApiError = z.infer<typeof ApiError>;

// ---- WebSocket ----

/** At most this many robot ids in one subscribe or unsubscribe message (keeps a frame well under 32 KB). */
export const MAX_SUBSCRIPTION_IDS = 200;
export const WILDCARD = '*';
const SubscriptionIds = z.array(z.union([z.literal(WILDCARD), RobotId])).min(1).max(MAX_SUBSCRIPTION_IDS);

export const ClientMessage = z.discriminatedUnion('action', [
  z.object({ action: z.literal('subscribe'), robotIds: SubscriptionIds }).strict(),
  z.object({ action: z.literal('unsubscribe'), robotIds: SubscriptionIds }).strict(),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/** One push per domain event, and one `RobotTelemetry` per sample. */
export const LiveMessage = z.object({
  type: z.union([z.enum(DOMAIN_EVENT_TYPES), z.literal('RobotTelemetry')]),
  robotId: RobotId,
  seq: z.number().int().nonnegative(),
  at: z.string(),
  data: z.record(z.string(), z.unknown()),
});
export type LiveMessage = z.infer<typeof LiveMessage>;

export const SubscriptionAck = z.object({
  type: z.enum(['Subscribed', 'Unsubscribed']),
  robotIds: z.array(z.string()),
});
export type SubscriptionAck = z.infer<typeof SubscriptionAck>;

/** The reply to a client message the server did not accept; `details` names the bad fields. */
export const WebSocketError = ApiError.extend({ type: z.literal('Error') });
export type WebSocketError = z.infer<typeof WebSocketError>;
