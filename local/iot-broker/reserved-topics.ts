import type { ProvisioningExchange } from '../../schemas/provisioning.js';
import { describeError } from '../../lib/describe-error.js';
import type { CertificateIdentity } from './authentication.js';
import type { BrokerLog } from './contract.js';

/**
 * The seam where IoT Core's reserved-topic services plug in (fleet provisioning's CreateCertificateFromCsr and
 * RegisterThing next, issue 11). Topics starting with `$` belong to AWS IoT; a client may publish to one only where
 * an IoT service (or the broker itself) answers it: "unsupported publish or subscribe operations to reserved topics
 * can result in a severed connection" (AWS IoT developer guide, Reserved topics).
 *
 * A service is a request/response exchange (AWS IoT's MQTT APIs): the client publishes the request, the service
 * answers on `<request>/accepted` or `<request>/rejected`, to the connection that made the request only ("results
 * [come] through the same MQTT connection used to publish the API request").
 *
 * A pattern service answers a family of request topics rather than one (IoT Jobs' `$aws/things/<thing>/jobs/get`,
 * `.../start-next`, `.../<jobId>/get`, `.../<jobId>/update`, issue 12): it says which topics it answers and names its
 * reply topics itself (still to the requesting connection only).
 *
 * INVARIANTS
 * - `resolve` is pure: a topic not starting with `$` is `notReserved`; a service's exact request topic is that
 *   service; else the first pattern service that answers the topic is that one; the reserved families the broker
 *   already handles elsewhere (Basic Ingest `$aws/rules/...`, the rules engine; the rest of IoT Jobs'
 *   `$aws/things/<thing>/jobs/...`, passed through as before) are `passThrough`; every other `$` topic is `refused`
 *   (the broker closes the connection, CLIENT_ERROR);
 * - two services never share a request topic (the registry refuses to be built otherwise), and an exact service
 *   comes before any pattern service;
 * - a request gets exactly one reply, on its exchange's accepted or rejected topic: a handler that throws, or
 *   returns without replying, gets a 500 `InternalFailure` rejection sent for it; a second reply is refused.
 */

/** AWS IoT's error reply on an MQTT API's `/rejected` topic. */
export interface ReservedTopicError {
  readonly statusCode: number;
  readonly errorCode: string;
  readonly errorMessage: string;
}

/** One request a client published to a service's request topic. */
export interface ReservedTopicRequest {
  readonly clientId: string;
  /** The certificate the client connected with (e.g. the claim certificate, for RegisterThing's hook). */
  readonly certificate: CertificateIdentity;
  readonly topic: string;
  readonly payload: Buffer;
}

/** How a handler answers: once, accepted or rejected (JSON bodies, as the `json` payload format of the MQTT APIs). */
export interface ReservedTopicReplies {
  accepted(body: Record<string, unknown>): Promise<void>;
  rejected(error: ReservedTopicError): Promise<void>;
}

export interface ReservedTopicService {
  /** For logs, e.g. `CreateCertificateFromCsr`. */
  readonly name: string;
  /** Its request topic and the two reply topics (schemas/provisioning.ts `provisioningTopics`). */
  readonly exchange: ProvisioningExchange;
  handle(request: ReservedTopicRequest, replies: ReservedTopicReplies): Promise<void>;
}

/**
 * A service answering a family of request topics; it replies through `reply` on the topics it chooses (a Jobs request's
 * `<request>/accepted|rejected`), each reply to the requesting connection only, subscribed or not (as IoT Jobs does).
 */
export interface ReservedTopicPatternService {
  /** For logs, e.g. `IoT Jobs`. */
  readonly name: string;
  /** Whether `topic` is one of its request topics (pure). */
  answers(topic: string): boolean;
  handle(request: ReservedTopicRequest, reply: DeliverReply): Promise<void>;
}

export type ReservedTopicRoute =
  | { readonly kind: 'notReserved' }
  | { readonly kind: 'passThrough'; readonly family: string }
  | { readonly kind: 'service'; readonly service: ReservedTopicService }
  | { readonly kind: 'patternService'; readonly service: ReservedTopicPatternService }
  | { readonly kind: 'refused'; readonly problem: string };

/** Reserved topic families the broker serves elsewhere, or lets through as it always did. */
const PASS_THROUGH: readonly { readonly family: string; readonly pattern: RegExp }[] = [
  { family: 'Basic Ingest', pattern: /^\$aws\/rules\// },
  { family: 'IoT Jobs', pattern: /^\$aws\/things\/[^/]+\/jobs\// },
];

/** Sends one reply to the requesting connection only. */
export type DeliverReply = (topic: string, body: Record<string, unknown>) => Promise<void>;

export class ReservedTopics {
  private readonly services = new Map<string, ReservedTopicService>();

  constructor(
    services: readonly ReservedTopicService[] = [],
    private readonly log: BrokerLog = () => undefined,
    private readonly patternServices: readonly ReservedTopicPatternService[] = [],
  ) {
    for (const service of services) {
      const { request } = service.exchange;
      if (!request.startsWith('$')) throw new Error(`Service ${service.name}: its request topic ${request} is not a reserved ($) topic`);
      const other = this.services.get(request);
      if (other) throw new Error(`Services ${other.name} and ${service.name} both answer ${request}`);
      this.services.set(request, service);
    }
  }

  resolve(topic: string): ReservedTopicRoute {
    if (!topic.startsWith('$')) return { kind: 'notReserved' };
    const service = this.services.get(topic);
    if (service) return { kind: 'service', service };
    const patternService = this.patternServices.find((candidate) => candidate.answers(topic));
    if (patternService) return { kind: 'patternService', service: patternService };
    const passThrough = PASS_THROUGH.find(({ pattern }) => pattern.test(topic));
    if (passThrough) return { kind: 'passThrough', family: passThrough.family };
    return { kind: 'refused', problem: `published to the reserved topic ${topic}, which no AWS IoT service here answers` };
  }

  /**
   * Runs a service for one request; `deliver` sends a reply to the requesting connection. Resolves once the request
   * is answered (never rejects: a handler's failure is answered with a 500 rejection and logged).
   */
  async dispatch(service: ReservedTopicService, request: ReservedTopicRequest, deliver: DeliverReply): Promise<void> {
    const { accepted, rejected } = service.exchange;
    let replied = false;
    const once =
      <T extends Record<string, unknown>>(topic: string) =>
      async (body: T): Promise<void> => {
        if (replied) throw new Error(`${service.name} already answered the request of ${request.clientId}`);
        replied = true;
        await deliver(topic, body);
      };
    const replies: ReservedTopicReplies = {
      accepted: once(accepted),
      rejected: (error) => once<Record<string, unknown>>(rejected)({ ...error }),
    };
    const fail = async (problem: string): Promise<void> => {
      this.log({ level: 'error', message: `${service.name} failed: ${problem}`, clientId: request.clientId, topic: request.topic });
      if (replied) return;
      await replies.rejected({ statusCode: 500, errorCode: 'InternalFailure', errorMessage: `${service.name} failed: ${problem}` }).catch(() => undefined);
    };
    try {
      await service.handle(request, replies);
      if (!replied) await fail('it did not answer');
    } catch (error) {
      await fail(describeError(error));
    }
  }

  /** Runs a pattern service for one request (never rejects: a handler's failure is logged; it answers its own errors). */
  async dispatchPattern(service: ReservedTopicPatternService, request: ReservedTopicRequest, deliver: DeliverReply): Promise<void> {
    try {
      await service.handle(request, deliver);
    } catch (error) {
      this.log({ level: 'error', message: `${service.name} failed: ${describeError(error)}`, clientId: request.clientId, topic: request.topic });
    }
  }
}
