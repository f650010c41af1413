import type { ThingPolicyStatement } from '../../schemas/thing-policy.js';
import type { TopicRule } from '../../schemas/topics.js';
import type { ReservedTopicPatternService, ReservedTopicService } from './reserved-topics.js';

/**
 * What the local IoT broker takes and gives (local/iot-broker.ts composes it): its options, its handle, the rule
 * actions it drives and its log entries. Plain types only, shared by every unit under local/iot-broker/.
 */

/** What a rule's Kinesis action puts: the partition key from the rule's template and the SQL's output. */
export interface RuleRecord {
  readonly partitionKey: string;
  readonly data: Record<string, unknown>;
}

export interface RuleAction {
  /** An ingest rule (schemas/topics.ts) or another rule with a local partition key (schemas/rotation.ts ROTATION_RULE). */
  readonly rule: Pick<TopicRule, 'name' | 'topicFilter' | 'sql' | 'partitionKey' | 'description'>;
  /** The rule's action: resolves once the record is durably in the stream, rejects if it is not. */
  readonly put: (record: RuleRecord) => Promise<void>;
}

export type BrokerLogEntry = { level: 'debug' | 'info' | 'warn' | 'error'; message: string; [k: string]: unknown };
export type BrokerLog = (entry: BrokerLogEntry) => void;

/** The thing registry as the broker needs it: is this certificate attached to the thing of this name? */
export interface ThingRegistryView {
  isAttached(thingName: string, certificateId: string): Promise<boolean>;
}

export interface IotBrokerOptions {
  readonly port: number; // 0 = any free port
  readonly host?: string; // default '127.0.0.1'
  readonly caCertificatePem: string; // client certs must chain to it
  readonly serverCertificatePem: string;
  readonly serverPrivateKeyPem: string;
  readonly registry: ThingRegistryView;
  readonly rules: readonly RuleAction[];
  /** IoT Core raises keep-alives below 30 s to 30 s; tests set this lower (e.g. 1). Default 30. */
  readonly minKeepAliveSeconds?: number;
  readonly log?: BrokerLog;
  /** The `$aws/...` request/response services the broker answers (none by default; see reserved-topics.ts). */
  readonly reservedTopicServices?: readonly ReservedTopicService[];
  /** Services answering a family of `$aws/...` request topics (the local IoT Jobs, issue 12); none by default. */
  readonly reservedTopicPatternServices?: readonly ReservedTopicPatternService[];
  /** Admits fleet provisioning's claim clients (`claim-<serial>`, schemas/provisioning.ts); none by default. */
  readonly claims?: ClaimAdmission;
}

/**
 * Who may connect with a claim certificate: a client id starting with `claim-` whose certificate (by id) is a claim
 * certificate; it then acts under `policy` (claimPolicy(templateName)) instead of the thing policy.
 */
export interface ClaimAdmission {
  readonly policy: readonly ThingPolicyStatement[];
  isClaimCertificate(certificateId: string): Promise<boolean>;
}

export interface IotBroker {
  readonly port: number;
  connectedThings(): string[];
  /** Resolves when every put under way (and every lifecycle publish) has finished (tests/benchmarks wait on it). */
  idle(): Promise<void>;
  /**
   * Publishes a message as the cloud would (e.g. a command to `cmd/heartbeat/<thing>/report-now`), QoS 1; it goes
   * through the rules too, and the promise rejects if one of their puts failed.
   */
  publish(topic: string, payload: unknown): Promise<void>;
  /** Disconnects everyone (lifecycle `disconnected` with SERVER_INITIATED_DISCONNECT), waits for the puts, closes. */
  stop(): Promise<void>;
}

export function defaultLog(entry: BrokerLogEntry): void {
  if (entry.level !== 'debug') console.error(JSON.stringify({ component: 'iot-broker', ...entry }));
}

/**
 * Work under way that `idle()` waits for (rule puts, lifecycle publishes). INVARIANT: a promise is in the set from
 * `track` until it settles; `idle` returns only once the set is empty, work added while it waits included.
 */
export class PendingWork {
  private readonly pending = new Set<Promise<unknown>>();

  readonly track = (work: Promise<unknown>): void => {
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work));
  };

  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
