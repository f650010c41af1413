import { APP, TOPIC_RULES } from './topics.js';

/**
 * The thing policy every robot certificate carries, as plain data, and an evaluator with IoT Core's matching rules.
 * One definition: infra/stacks/iot-stack.ts turns it into the IoT policy document (each resource becomes an ARN),
 * and the local broker (local/iot-broker.ts) asks `isAllowed` before every connect, publish, subscribe and delivery,
 * so the local cloud refuses exactly what IoT Core would.
 */

/** The policy variable IoT Core replaces with the thing name of the connection (certificate attached to it). */
export const THING_NAME_VARIABLE = '${iot:Connection.Thing.ThingName}';

export type PolicyAction = 'Connect' | 'Publish' | 'Subscribe' | 'Receive';

/** The ARN resource type each action is checked against: a subscription is checked as a `topicfilter`. */
export const RESOURCE_TYPE = {
  Connect: 'client',
  Publish: 'topic',
  Subscribe: 'topicfilter',
  Receive: 'topic',
} as const satisfies Record<PolicyAction, string>;
export type PolicyResourceType = (typeof RESOURCE_TYPE)[PolicyAction];

export interface ThingPolicyStatement {
  readonly sid: string;
  readonly action: PolicyAction;
  /**
   * Resource names after `<type>/` in the ARN, each naming the thing through THING_NAME_VARIABLE. IoT policy
   * wildcards: `*` matches any characters (including `/`), `?` exactly one; everything else is literal.
   */
  readonly resources: readonly string[];
  /** IAM condition, as written in the policy document. */
  readonly condition?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

const thing = THING_NAME_VARIABLE;
const ownJobs = `$aws/things/${thing}/jobs/*`;

/**
 * Allow statements only: a robot may connect, publish, subscribe and receive only as itself. `telemetryRule` is the
 * name of the telemetry rule robots reach through Basic Ingest: `topicRuleName(TOPIC_RULES.telemetry, stage)` in a
 * deployed stage, the plain name in the local cloud (THING_POLICY).
 */
export function thingPolicy(telemetryRule: string = TOPIC_RULES.telemetry.name): readonly ThingPolicyStatement[] {
  return [
    {
      sid: 'ConnectAsOwnThing',
      action: 'Connect',
      resources: [thing],
      // The certificate must be attached to the thing whose name it uses as client id.
      condition: { Bool: { 'iot:Connection.Thing.IsAttached': 'true' } },
    },
    {
      sid: 'PublishOwnData',
      action: 'Publish',
      resources: [
        `dt/${APP}/${thing}/*`,
        // Basic Ingest for telemetry: straight to the rule, no messaging charge.
        `$aws/rules/${telemetryRule}/dt/${APP}/${thing}/telemetry`,
        // Replies to commands (`cmd/heartbeat/<thing>/<request>/reply`, see schemas/topics.ts).
        `cmd/${APP}/${thing}/*/reply`,
        ownJobs,
      ],
    },
    {
      sid: 'SubscribeOwnCommandsAndJobs',
      action: 'Subscribe',
      resources: [`cmd/${APP}/${thing}/*`, ownJobs],
    },
    {
      sid: 'ReceiveOwnCommandsAndJobs',
      action: 'Receive',
      resources: [`cmd/${APP}/${thing}/*`, ownJobs],
    },
  ];
}

/** The thing policy of the local cloud (one broker, the plain rule names). */
export const THING_POLICY: readonly ThingPolicyStatement[] = thingPolicy();

/**
 * Whether the policy lets the connection of `thingName` do `action` on `topicOrFilter` (the client id for
 * `Connect`, the topic for `Publish`/`Receive`, the topic filter for `Subscribe`).
 *
 * `thingName` must be the thing the connection's certificate is attached to: IoT Core resolves the policy variable
 * only then (the `IsAttached` condition), and the broker checks that against the registry before asking here.
 * The thing name is substituted literally (a `*` in it is no wildcard), and MQTT wildcards in a subscription's
 * filter are plain characters, as IoT Core matches `topicfilter/` resources: `cmd/heartbeat/+/x` is not covered by
 * `cmd/heartbeat/<thing>/*`, `cmd/heartbeat/<thing>/#` is.
 */
export function isAllowed(action: PolicyAction, thingName: string, topicOrFilter: string, policy = THING_POLICY): boolean {
  if (thingName.length === 0) return false;
  return policy.some(
    (statement) =>
      statement.action === action && statement.resources.some((resource) => resourcePattern(resource, thingName).test(topicOrFilter)),
  );
}

/** A resource name with the thing substituted, as an anchored regular expression. */
function resourcePattern(resource: string, thingName: string): RegExp {
  const source = resource
    .split(THING_NAME_VARIABLE)
    .map((part) => [...part].map((char) => (char === '*' ? '.*' : char === '?' ? '.' : escapeRegExp(char))).join(''))
    .join(escapeRegExp(thingName));
  // `s`: a wildcard also spans line breaks, which MQTT topics may legally contain.
  return new RegExp(`^${source}$`, 's');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
