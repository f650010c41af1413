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
export const CLOUD_COMMAND_TOPICS = [`cmd/${APP}/*/report-now`] as const;

/** The handler each rule invokes, by its file name in functions/handlers/. */
export type RuleTarget = 'iot-presence' | 'iot-telemetry' | 'iot-robot-events';

export interface TopicRule {
  /** IoT rule names allow only letters, digits and underscores. */
  readonly name: string;
  readonly topicFilter: string;
  readonly sql: string;
  readonly target: RuleTarget;
  readonly description: string;
}

/**
 * `topic(3)` is the thing name in `dt/heartbeat/<thing>/...`; the thing policy guarantees a robot can only publish
 * under its own name, so the rule adds it to the payload and the handler trusts it over anything in the body.
 */
export const TOPIC_RULES = {
  presence: {
    name: 'heartbeat_presence',
    topicFilter: '$aws/events/presence/+/+',
    sql: "SELECT * FROM '$aws/events/presence/+/+'",
    target: 'iot-presence',
    description: 'IoT lifecycle events (connected/disconnected) to the presence handler',
  },
  telemetry: {
    name: 'heartbeat_telemetry',
    topicFilter: `dt/${APP}/+/telemetry`,
    sql: `SELECT *, topic(3) AS thingName FROM 'dt/${APP}/+/telemetry'`,
    target: 'iot-telemetry',
    description: 'Telemetry samples from robot agents (also reachable through Basic Ingest)',
  },
  events: {
    name: 'heartbeat_robot_events',
    topicFilter: `dt/${APP}/+/events`,
    sql: `SELECT *, topic(3) AS thingName FROM 'dt/${APP}/+/events'`,
    target: 'iot-robot-events',
    description: 'Facts reported by robot agents (teleoperation started/stopped)',
  },
} as const satisfies Record<string, TopicRule>;
