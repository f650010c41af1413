/**
 * MQTT topics and the IoT topic rules that route them, following AWS's topic-design guidance
 * (`dt/<app>/<thing>/<kind>` for device data, `cmd/<app>/<thing>/<request>` for commands). One definition, used by
 * the agent, the CDK stacks and the local cloud.
 */
export const APP = 'heartbeat';

export const topics = {
  telemetry: (thing: string) => `dt/${APP}/${thing}/telemetry`,
  events: (thing: string) => `dt/${APP}/${thing}/events`,
  command: (thing: string, request: string) => `cmd/${APP}/${thing}/${request}`,
  commandReply: (thing: string, request: string) => `cmd/${APP}/${thing}/${request}/reply`,
  presenceConnected: (clientId: string) => `$aws/events/presence/connected/${clientId}`,
  presenceDisconnected: (clientId: string) => `$aws/events/presence/disconnected/${clientId}`,
  /** Basic Ingest: triggers the rule directly, with no messaging charge; devices cannot subscribe to it. */
  basicIngest: (ruleName: string, topic: string) => `$aws/rules/${ruleName}/${topic}`,
} as const;

/**
 * The commands the cloud may publish to robots, as IAM topic resource names (`*` matches anything, `/` included):
 * the http-api's `iot:Publish` grant in infra and the local data plane's check share this list.
 */
export const CLOUD_COMMAND_TOPICS = [
  `cmd/${APP}/*/report-now`,
  // POST /api/v2/robots/{id}/rotate-certificate (schemas/rotation.ts ROTATION_COMMANDS.rotate).
  `cmd/${APP}/*/rotate-certificate`,
] as const;

/** The requests the cloud sends a robot on `cmd/heartbeat/<thing>/<request>`. */
export const ROBOT_REQUESTS = {
  /** Ask for a fresh telemetry sample now (POST /api/v2/discover). */
  reportNow: 'report-now',
  /** What the log holds of the robot's events (EventsAck), published by the ingest consumer. */
  eventsAck: 'ack',
} as const;

/** What the ingest consumer may publish, as an IAM topic resource name (its `iot:Publish` grant in infra). */
export const INGEST_ACK_TOPICS = [`cmd/${APP}/*/${ROBOT_REQUESTS.eventsAck}`] as const;

/** Which kind of robot message a rule carries; the ingest consumer reads each record as its kind. */
export type IngestKind = 'presence' | 'telemetry' | 'events';

export interface TopicRule {
  /** IoT rule names allow only letters, digits and underscores. */
  readonly name: string;
  readonly topicFilter: string;
  /** The output always has `topic` (the topic the message came on: the consumer reads the kind and robot from it). */
  readonly sql: string;
  readonly kind: IngestKind;
  /**
   * The Kinesis action's partition key, an IoT substitution template naming the robot: every message of one robot
   * (its presence, telemetry and events) lands on one shard, in the order IoT Core received them.
   */
  readonly partitionKey: string;
  readonly description: string;
}

/**
 * Every rule puts its messages into one ordered channel (the ingest Kinesis stream) keyed by the robot, instead of
 * invoking a Lambda per message: IoT Core's rules engine handles messages concurrently and in any order, so per-message
 * invocations raced for the same robot's head and lost a backlog. `topic(3)` is the thing name in
 * `dt/heartbeat/<thing>/...`; the thing policy guarantees a robot can only publish under its own name, so the rule adds
 * it to the payload and the consumer trusts it over anything in the body. `topic(5)` is the client id in
 * `$aws/events/presence/<eventType>/<clientId>`.
 */
export const TOPIC_RULES = {
  presence: {
    name: 'heartbeat_presence',
    topicFilter: '$aws/events/presence/+/+',
    sql: "SELECT *, topic() AS topic FROM '$aws/events/presence/+/+'",
    kind: 'presence',
    partitionKey: '${topic(5)}',
    description: 'IoT lifecycle events (connected/disconnected) into the ingest stream, keyed by client id',
  },
  telemetry: {
    name: 'heartbeat_telemetry',
    topicFilter: `dt/${APP}/+/telemetry`,
    sql: `SELECT *, topic(3) AS thingName, topic() AS topic FROM 'dt/${APP}/+/telemetry'`,
    kind: 'telemetry',
    partitionKey: '${topic(3)}',
    description: 'Telemetry samples from robot agents (also reachable through Basic Ingest) into the ingest stream',
  },
  events: {
    name: 'heartbeat_robot_events',
    topicFilter: `dt/${APP}/+/events`,
    sql: `SELECT *, topic(3) AS thingName, topic() AS topic FROM 'dt/${APP}/+/events'`,
    kind: 'events',
    partitionKey: '${topic(3)}',
    description: 'Facts reported by robot agents (teleoperation started/stopped) into the ingest stream',
  },
} as const satisfies Record<string, TopicRule>;

/** A deployment stage as it may appear in physical names (infra/heartbeat.ts checks it): `dev`, `prod`, `staging-eu`. */
export const STAGE_PATTERN = /^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,19}$/;

/**
 * The name of a topic rule in one deployment stage: `heartbeat_telemetry_prod`. Rule names are unique per account and
 * region, so each stage's rules carry its name (`-` becomes `_`: rule names allow only letters, digits and `_`). The
 * agent's Basic Ingest topic (`$aws/rules/<name>/...`) and the thing policy name the stage's telemetry rule through
 * this function. Without a stage (the local cloud, one broker per run): the plain `rule.name`.
 */
export function topicRuleName(rule: Pick<TopicRule, 'name'>, stage?: string): string {
  if (stage === undefined) return rule.name;
  if (!STAGE_PATTERN.test(stage)) {
    throw new Error(`stage ${JSON.stringify(stage)} is not a stage name (lower-case letters, digits and single inner hyphens, at most 20)`);
  }
  return `${rule.name}_${stage.replace(/-/g, '_')}`;
}

/**
 * The kind of a message by the topic it came on (the rule's `topic()`), and the robot it is about; undefined for a
 * topic no rule reads. Basic Ingest messages carry the topic after `$aws/rules/<rule>/`, as IoT Core's `topic()` does.
 */
export function ingestTopicOf(topic: string): { readonly kind: IngestKind; readonly robotId: string } | undefined {
  const levels = topic.split('/');
  if (levels.length === 5 && levels[0] === '$aws' && levels[1] === 'events' && levels[2] === 'presence') {
    return { kind: 'presence', robotId: levels[4] ?? '' };
  }
  if (levels.length === 4 && levels[0] === 'dt' && levels[1] === APP) {
    if (levels[3] === 'telemetry') return { kind: 'telemetry', robotId: levels[2] ?? '' };
    if (levels[3] === 'events') return { kind: 'events', robotId: levels[2] ?? '' };
  }
  return undefined;
}
