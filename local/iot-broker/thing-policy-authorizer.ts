import { IOT_MAX_PAYLOAD_BYTES, IOT_MAX_QOS } from '../../schemas/iot-limits.js';
import { THING_POLICY, type ThingPolicyStatement, isAllowed } from '../../schemas/thing-policy.js';
import { parseBasicIngestTopic } from '../topic-rules.js';

/**
 * The broker's decisions on what a connected client may do, as IoT Core makes them: pure functions of the client's
 * thing name, the packet and the policy (schemas/thing-policy.ts), with IoT Core's limits (schemas/iot-limits.ts).
 * The composition (local/iot-broker.ts) carries them out on aedes; nothing here touches a connection.
 *
 * INVARIANTS
 * - IoT's limits come before the policy: a PUBLISH over 128 KB or at QoS 2, or a SUBSCRIBE at QoS 2, is refused
 *   with `CLIENT_ERROR` whatever the policy says (IoT Core closes the connection with no PUBACK/SUBACK);
 * - a PUBLISH the policy does not allow is refused with `FORBIDDEN_ACCESS` (the connection is closed);
 * - a SUBSCRIBE the policy does not allow refuses that filter only (SUBACK 0x80), the connection stays;
 * - nothing reaches a client without `Receive` on the topic, and Basic Ingest messages (`$aws/rules/...`) reach no
 *   client at all: they go to their rule only.
 */

export interface PublishRequest {
  readonly topic: string;
  readonly qos: number;
  readonly payload: Buffer | Uint8Array | string;
}

export type PublishDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** The lifecycle disconnectReason of the connection the refused PUBLISH closes. */
      readonly reason: 'CLIENT_ERROR' | 'FORBIDDEN_ACCESS';
      /** What the client did, completing "<client id> published …"/"<client id> may not …". */
      readonly problem: string;
      /** What the broker logs (a warning) when the publish came on a live connection. */
      readonly logMessage: string;
    };

export function decidePublish(thingName: string, packet: PublishRequest, policy: readonly ThingPolicyStatement[] = THING_POLICY): PublishDecision {
  const beyondLimits = beyondIotLimits(packet);
  if (beyondLimits) {
    return {
      allowed: false,
      reason: 'CLIENT_ERROR',
      problem: `published ${beyondLimits}`,
      logMessage: `Publish refused as IoT Core refuses it (${beyondLimits}): disconnecting`,
    };
  }
  if (isAllowed('Publish', thingName, packet.topic, policy)) return { allowed: true };
  return {
    allowed: false,
    reason: 'FORBIDDEN_ACCESS',
    problem: `may not publish to ${packet.topic}`,
    logMessage: 'Publish not allowed by the thing policy: disconnecting',
  };
}

export type SubscribeDecision =
  | { readonly kind: 'grant' }
  /** SUBACK 0x80 for this filter; the connection stays. */
  | { readonly kind: 'refuseFilter'; readonly logMessage: string }
  /** No SUBACK; the connection is closed with CLIENT_ERROR. */
  | { readonly kind: 'disconnect'; readonly reason: 'CLIENT_ERROR'; readonly problem: string; readonly logMessage: string };

export function decideSubscribe(
  thingName: string,
  subscription: { readonly topic: string; readonly qos: number },
  policy: readonly ThingPolicyStatement[] = THING_POLICY,
): SubscribeDecision {
  if (subscription.qos > IOT_MAX_QOS) {
    return {
      kind: 'disconnect',
      reason: 'CLIENT_ERROR',
      problem: `subscribed at QoS ${subscription.qos}`,
      logMessage: `Subscription at QoS ${subscription.qos} refused (IoT Core supports QoS 0 and 1): disconnecting`,
    };
  }
  if (isAllowed('Subscribe', thingName, subscription.topic, policy)) return { kind: 'grant' };
  return { kind: 'refuseFilter', logMessage: 'Subscription not allowed by the thing policy' };
}

/** Whether a message on `topic` may be delivered to the client of `thingName`. */
export function mayReceive(thingName: string, topic: string, policy: readonly ThingPolicyStatement[] = THING_POLICY): boolean {
  // Basic Ingest messages go to their rule only; nothing reaches a robot without `Receive` on the topic.
  if (parseBasicIngestTopic(topic)) return false;
  return isAllowed('Receive', thingName, topic, policy);
}

/** What makes a client's PUBLISH one IoT Core refuses, or undefined when it is within its limits. */
export function beyondIotLimits(packet: Pick<PublishRequest, 'qos' | 'payload'>): string | undefined {
  if (packet.qos > IOT_MAX_QOS) return `at QoS ${packet.qos} (IoT Core supports QoS 0 and 1)`;
  const bytes = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
  if (bytes > IOT_MAX_PAYLOAD_BYTES) return `a ${bytes}-byte payload (IoT Core's limit is ${IOT_MAX_PAYLOAD_BYTES} bytes)`;
  return undefined;
}
