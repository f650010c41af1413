import { z } from 'zod';
import { TelemetrySample } from './device.js';
import { TelemetryFieldName } from './telemetry.js';
import { AlertSeverity, DOMAIN_EVENT_TYPES, TelemetryMetric } from './events.js';
import { Lifecycle, RobotId, RobotModel } from './robot-id.js';
import { DeploymentBatchView, DeploymentId, DeploymentState, DeploymentView, ReleaseVersion, RobotSoftwareView } from './deployments.js';

/** DTOs of the HTTP API (`/api/v2`) and the WebSocket API, shared by the handlers and the dashboard. */

export { LIFECYCLES, Lifecycle } from './robot-id.js';

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

/** One value of a robot's telemetry and how old it is (schemas/telemetry.ts says how samples are merged). */
export const TelemetryValueView = z.object({
  value: z.union([z.number(), z.string()]),
  /** When the sample that carried this value was taken (the robot's clock). */
  sampledAt: z.string(),
  /** Its age when the answer was made: the cloud's clock minus `sampledAt` (0 while the robot's clock is ahead). */
  ageMs: z.number().int().nonnegative(),
  /** The robot is offline (this is its last value, not a current one) or the value is older than TELEMETRY_STALE_AFTER_MS. */
  stale: z.boolean(),
});
export type TelemetryValueView = z.infer<typeof TelemetryValueView>;

/**
 * A robot's latest telemetry: each metric's last value at the top level (as a sample carries it, so readers of the
 * earlier flat shape keep working), `metrics` with each value's own time, age and staleness, and `sampledAt` / `ageMs` /
 * `stale` for the newest sample.
 */
export const TelemetryView = TelemetrySample.extend({
  metrics: z.partialRecord(TelemetryFieldName, TelemetryValueView),
  ageMs: z.number().int().nonnegative(),
  /** The robot is offline, or its newest sample is older than TELEMETRY_STALE_AFTER_MS. */
  stale: z.boolean(),
});
export type TelemetryView = z.infer<typeof TelemetryView>;

/**
 * The certificate a robot connects with, as the cloud knows it (issue 11, item 4: the fleet's certificate ages).
 * `issuedAt`: when the cloud issued it (its rotation's confirm) or admitted it (fleet provisioning's hook), within
 * minutes of its signing; null for a certificate made by `npm run cert`. `notAfter`: its expiry, known from the
 * provisioning (the hook reads it from the certificate) or a rotation; null for a certificate of neither.
 */
export const RobotCertificateView = z.object({
  /** IoT's certificate id; null when only a failed rotation is known. */
  id: z.string().nullable(),
  issuedAt: z.string().nullable(),
  notAfter: z.string().nullable(),
  /** When the robot last rotated, null if never. */
  rotatedAt: z.string().nullable(),
  /** The newest rotation that failed (CertificateRotationFailed), kept after a later success for the record. */
  lastRotationFailure: z.object({ reason: z.string(), detail: z.string().nullable(), at: z.string() }).nullable(),
});
export type RobotCertificateView = z.infer<typeof RobotCertificateView>;

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
    /**
     * False while a session is open but the robot's link dropped since the agent last spoke of it: the cloud keeps it
     * open (and the robot not deployable) until the agent confirms or ends it, or the robot stays offline too long.
     */
    confirmed: z.boolean(),
  }),
  alerts: z.array(ActiveAlertView),
  failure: z.object({ reason: z.string(), by: z.string(), at: z.string() }).nullable(),
  /** The robot's own messages the cloud refused (DeviceMessagesRejected): how many, and the last reason. */
  rejectedMessages: z.object({
    count: z.number().int().nonnegative(),
    last: z.object({ reason: z.string(), topic: z.string().nullable(), at: z.string() }).nullable(),
  }),
  telemetry: TelemetryView.nullable(),
  /** Null for a robot the cloud knows no certificate of (never provisioned by claim nor rotated). */
  certificate: RobotCertificateView.nullable(),
  /** The software version it runs (null until it says) and the update it is in (issue 12). */
  software: RobotSoftwareView,
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
  /** Robots' own messages refused by the ingest (see RobotView.rejectedMessages): in all, and how many robots sent any. */
  rejectedMessages: z.object({ total: z.number().int(), robots: z.number().int() }),
});
export type FleetMetrics = z.infer<typeof FleetMetrics>;

const limit = z.coerce.number().int().min(1).max(500).default(100);
const cursor = z.string().min(1).max(512).optional();

export const ListRobotsQuery = z
  .object({
    status: PresenceStatus.optional(),
    model: RobotModel.optional(),
    lifecycle: Lifecycle.optional(),
    version: ReleaseVersion.optional().describe('Only robots running this software version (RobotView.software.version).'),
    limit,
    cursor,
  })
  .strict();
export type ListRobotsQuery = z.infer<typeof ListRobotsQuery>;

/**
 * `GET /api/v2/robots/{id}/events`: newest first by default; with `after`, only events with `seq > after`, oldest first
 * (a client filling a gap in the live feed). `nextCursor` continues either listing in its own order (its cursor kind
 * says which, so a cursor of one order is never read as the other); `after` and `cursor` together are a 400.
 */
export const ListEventsQuery = z
  .object({
    limit,
    cursor,
    after: z.coerce
      .number()
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional()
      .describe('Only events with seq > after, oldest first. Not with `cursor` (follow nextCursor alone).'),
  })
  .strict();
export type ListEventsQuery = z.infer<typeof ListEventsQuery>;

/**
 * `GET /api/v2/robots/{id}/telemetry`: a robot's stored samples (the `telemetry_samples` read model, kept a week
 * back from its newest sample) in a window `from` (inclusive) to `to` (exclusive). Without `to` the window ends now;
 * without `from` it starts TELEMETRY_HISTORY_DEFAULT_MS before `to`. A window longer than TELEMETRY_HISTORY_MAX_MS,
 * or empty, is a 400 naming `from`. At most TELEMETRY_HISTORY_MAX_SAMPLES come back: the newest of the window, with
 * `truncated: true`; ask again with `to` set to the first sample's `sampledAt` for the ones before.
 */
export const TELEMETRY_HISTORY_DEFAULT_MS = 3_600_000;
export const TELEMETRY_HISTORY_MAX_MS = 24 * 3_600_000;
/** An hour of samples at the agent's default interval (1 s). */
export const TELEMETRY_HISTORY_MAX_SAMPLES = 3_600;

const windowEdge = z.iso.datetime({ offset: true });
export const RobotTelemetryQuery = z
  .object({
    from: windowEdge.optional().describe('Start of the window, inclusive (ISO 8601 with offset). Default: an hour before `to`.'),
    to: windowEdge.optional().describe('End of the window, exclusive (ISO 8601 with offset). Default: now. At most 24 hours after `from`.'),
  })
  .strict();
export type RobotTelemetryQuery = z.infer<typeof RobotTelemetryQuery>;

export const TelemetryHistory = z.object({
  robotId: RobotId,
  /** The window answered, after defaults (ISO 8601, UTC). */
  from: z.string(),
  to: z.string(),
  /** Oldest first, each as the robot sent it (a sample may carry only some metrics). */
  samples: z.array(TelemetrySample),
  /** The window held more than TELEMETRY_HISTORY_MAX_SAMPLES: these are its newest; older ones are before `samples[0]`. */
  truncated: z.boolean(),
});
export type TelemetryHistory = z.infer<typeof TelemetryHistory>;

export const MarkFailedRequest = z.object({ reason: z.string().trim().min(1).max(500) }).strict();
export const RecoverRequest = z.object({ note: z.string().trim().max(500).optional() }).strict();
/** At most this many robots in one `POST /api/v2/discover` selection (the dashboard's "report now" for a selection). */
export const MAX_DISCOVER_ROBOT_IDS = 100;
/**
 * `POST /api/v2/discover`: an empty body or `{}` asks every online robot; `robotIds` asks just those (a robot named
 * twice is asked once), and the answer says per robot what happened.
 */
export const DiscoverRequest = z
  .object({ robotIds: z.array(RobotId).min(1).max(MAX_DISCOVER_ROBOT_IDS).optional() })
  .strict();
export type DiscoverRequest = z.infer<typeof DiscoverRequest>;

/**
 * What happened to one robot of a discover selection: `asked` (the command was published), `failed` (publishing it
 * did not work), `offline` (not online in the read model: not asked) or `not-found` (not in the fleet).
 */
export const DISCOVER_OUTCOMES = ['asked', 'failed', 'offline', 'not-found'] as const;
export const DiscoverOutcome = z.enum(DISCOVER_OUTCOMES);
export type DiscoverOutcome = z.infer<typeof DiscoverOutcome>;

/** The result of a command: the robot as the event log now has it (read models follow within a second). */
export const CommandResult = z.object({
  robot: RobotView,
  appended: z.array(z.object({ seq: z.number().int(), type: z.string(), eventId: z.string() })),
});
export type CommandResult = z.infer<typeof CommandResult>;

/**
 * The answer to `POST /api/v2/discover` (202): every robot online in the read model (or of the selection) was asked
 * to report now. `asked` robots got the command, publishing it to `failed` more did not work; the reports arrive on the live feed as
 * `RobotTelemetry` messages.
 */
export const DiscoverResult = z.object({
  requestId: z.uuid(),
  asked: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  /** Only for a request with `robotIds`: each robot named, in the order asked, with its outcome. */
  robots: z.array(z.object({ robotId: z.string(), outcome: DiscoverOutcome })).optional(),
});
export type DiscoverResult = z.infer<typeof DiscoverResult>;

/** Every `error.code` the HTTP API answers with: what a client branches on, so each is named here once. */
export const API_ERROR_CODES = [
  'INVALID_REQUEST',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'ROUTE_NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'ROBOT_NOT_FOUND',
  'ALREADY_FAILED',
  'NOT_FAILED',
  /** 422: an Idempotency-Key the caller already used on this robot for another request (route or body). */
  'IDEMPOTENCY_KEY_REUSED',
  'ROBOT_BUSY',
  /** 409: the command needs the robot's live connection (POST …/rotate-certificate). */
  'ROBOT_OFFLINE',
  /** Deployments (issue 12): 404 an unknown release or deployment; 409 no robot deployable now (the held ones in
   * `details.held`), or an action the deployment's state does not allow; 503 deployments not set up here. */
  'RELEASE_NOT_FOUND',
  'DEPLOYMENT_NOT_FOUND',
  'NO_DEPLOYABLE_ROBOT',
  'DEPLOYMENT_STATE_CONFLICT',
  'DEPLOYMENTS_UNAVAILABLE',
  'INTERNAL_ERROR',
] as const;
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

export const ApiError = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
export type ApiError = z.infer<typeof ApiError>;

// ---- WebSocket ----

export const WILDCARD = '*';
/**
 * A connection watches at most this many robots by id, plus `*` (the whole fleet, which counts as none): every
 * subscription is an item the broadcaster reads and `$disconnect` deletes, so the bound keeps both within API
 * Gateway's 29 s. A dashboard watching more robots than this subscribes to `*`.
 */
export const MAX_SUBSCRIPTIONS_PER_CONNECTION = 100;
/** At most this many robot ids in one subscribe or unsubscribe message: no more can be held anyway. */
export const MAX_SUBSCRIPTION_IDS = MAX_SUBSCRIPTIONS_PER_CONNECTION + 1;
const SubscriptionIds = z
  .array(z.union([z.literal(WILDCARD), RobotId]))
  .min(1)
  .max(MAX_SUBSCRIPTION_IDS, `a connection watches at most ${MAX_SUBSCRIPTIONS_PER_CONNECTION} robots by id; subscribe to "${WILDCARD}" for the whole fleet`);

/**
 * How a connection gets telemetry, set by `subscribe` and kept per connection (a later subscribe that names another
 * rate changes it; one that names none keeps it; a new connection is `raw`):
 * - `raw`: one `RobotTelemetry` LiveMessage per sample (for a few robots);
 * - `1s`: no `RobotTelemetry`; instead at most one round of `RobotsUpdated` messages a second, with the latest
 *   RobotView of each watched robot whose head changed since the last round (for the whole fleet).
 * Domain events come one LiveMessage each, in order, whatever the rate.
 */
export const TELEMETRY_RATES = ['raw', '1s'] as const;
export const TelemetryRate = z.enum(TELEMETRY_RATES);
export type TelemetryRate = z.infer<typeof TelemetryRate>;
export type CoalescedTelemetryRate = Exclude<TelemetryRate, 'raw'>;
/** The shortest time between two rounds of `RobotsUpdated` to one connection, per coalesced rate. */
export const TELEMETRY_RATE_INTERVAL_MS: Readonly<Record<CoalescedTelemetryRate, number>> = { '1s': 1000 };
export const DEFAULT_TELEMETRY_RATE: TelemetryRate = 'raw';

export const ClientMessage = z.discriminatedUnion('action', [
  z
    .object({
      action: z.literal('subscribe'),
      robotIds: SubscriptionIds,
      telemetry: TelemetryRate.optional().describe(
        'How this connection gets telemetry: "raw" (a RobotTelemetry per sample) or "1s" (RobotsUpdated at most once a second). Absent: the connection keeps its rate ("raw" on a new connection).',
      ),
    })
    .strict(),
  z.object({ action: z.literal('unsubscribe'), robotIds: SubscriptionIds }).strict(),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;
export type ClientAction = ClientMessage['action'];
/**
 * The WebSocket API's message routes (`action`), each a route key infra declares and the local gateway routes on;
 * anything else reaches `$default`, which lists these.
 */
export const CLIENT_ACTIONS: readonly ClientAction[] = ClientMessage.options.map((option) => option.shape.action.value);

/**
 * One push per domain event, and one `RobotTelemetry` per sample whose `data` is the robot's whole latest telemetry
 * (a TelemetryView: a sample may carry only some metrics, the others keep their last value and age).
 */
export const LiveMessage = z.object({
  type: z.union([z.enum(DOMAIN_EVENT_TYPES), z.literal('RobotTelemetry')]),
  robotId: RobotId,
  seq: z.number().int().nonnegative(),
  at: z.string(),
  data: z.record(z.string(), z.unknown()),
  /** On a `RobotTelemetry` that answers POST /api/v2/discover: that discover's `requestId`. */
  requestId: z.string().optional(),
});
export type LiveMessage = z.infer<typeof LiveMessage>;

/**
 * The robots a coalesced connection (`telemetry` other than `raw`) watches whose head changed since its last round:
 * each robot's whole latest RobotView (state, lifecycle, health, alerts, telemetry), once per round, latest wins. A
 * round is split into messages of less than LIVE_MESSAGE_MAX_BYTES each, in no set order of robots; `at` is when the
 * round was made (the telemetry ages are counted to it).
 */
export const RobotsUpdated = z.object({
  type: z.literal('RobotsUpdated'),
  at: z.string(),
  robots: z.array(RobotView),
});
export type RobotsUpdated = z.infer<typeof RobotsUpdated>;
/**
 * A deployment's record moved (issue 12): pushed to every connection subscribed to `*`, once per committed change of
 * the deployment's head (its `revision` grows by one with each), so a dashboard re-reads GET /api/v2/deployments/{id}
 * only when there is something new. A summary, not the robots: a deployment of 10,000 robots would not fit a message.
 * Made from the deployments table's stream (functions/app/live/deployment-changes.ts); a message that comes twice (a
 * retried batch) carries the same revision, and a lower revision than one already seen is older news.
 */
export const DeploymentChanged = z.object({
  type: z.literal('DeploymentChanged'),
  deploymentId: DeploymentId,
  state: DeploymentState,
  reason: z.string().nullable(),
  counts: DeploymentView.shape.counts,
  batches: z.array(DeploymentBatchView),
  updatedAt: z.string(),
  revision: z.number().int().positive(),
});
export type DeploymentChanged = z.infer<typeof DeploymentChanged>;

/** Every message pushed on a connection: below API Gateway's 128 KB per WebSocket message, with room to spare. */
export const LIVE_MESSAGE_MAX_BYTES = 120_000;

export const SubscriptionAck = z.object({
  type: z.enum(['Subscribed', 'Unsubscribed']),
  robotIds: z.array(z.string()),
  /** On `Subscribed`, when the subscribe named a rate or the connection's is not `raw`: its rate from now on. */
  telemetry: TelemetryRate.optional(),
});
export type SubscriptionAck = z.infer<typeof SubscriptionAck>;

/** The reply to a client message the server did not accept; `details` names the bad fields. */
export const WebSocketError = ApiError.extend({ type: z.literal('Error') });
export type WebSocketError = z.infer<typeof WebSocketError>;
