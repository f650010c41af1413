import { describeError } from '../../lib/describe-error.js';
import {
  type ParsedRuleSql,
  type PartitionKeyTemplate,
  type RuleMessage,
  applyRuleSql,
  parseBasicIngestTopic,
  parsePartitionKey,
  parseRuleSql,
  partitionKeyOf,
  topicMatches,
} from '../topic-rules.js';
import type { BrokerLog, RuleAction, RuleRecord } from './contract.js';

/**
 * The rules engine: topic rules (the SQL subset and partition key templates in local/topic-rules.ts) and Basic
 * Ingest (`$aws/rules/<rule>/<topic>`), each rule's action a put into an ordered channel (the ingest Kinesis
 * stream) keyed by the robot.
 *
 * INVARIANTS
 * - the rules are checked when the engine is made: a bad name, a name given twice or SQL/partition key outside the
 *   supported subset throws then;
 * - `route` queues the puts of every matching rule synchronously, when it is called; the broker calls it before it
 *   acknowledges a client's message (a QoS 1 PUBACK means the message is in the stream) and the moment a
 *   connection changes for a lifecycle event, so the call order is the order the broker received things;
 * - puts for one partition key go one after another in that order (Kinesis orders a key's records only when the
 *   calls do not overlap);
 * - a message's put queued behind one that failed fails too, untried, so nothing the client sent after it overtakes
 *   the message being resent; a lifecycle event, which nobody resends, is put anyway;
 * - a message a rule cannot take (not a JSON object, no partition key) is logged and passed over, as IoT Core's rule
 *   would fail it; a Basic Ingest message for an unknown rule, or without a topic, is logged and dropped.
 */

interface CompiledRule {
  readonly action: RuleAction;
  readonly sql: ParsedRuleSql;
  readonly partitionKey: PartitionKeyTemplate;
}

export class RulesEngine {
  private readonly rules: readonly CompiledRule[];
  private readonly rulesByName: ReadonlyMap<string, CompiledRule>;
  /** The last put per partition key: the next one waits for it (see putInOrder). */
  private readonly putChains = new Map<string, Promise<void>>();

  constructor(
    actions: readonly RuleAction[],
    private readonly log: BrokerLog,
    /** Told of every put, so that the broker's idle() waits for it. */
    private readonly track: (work: Promise<unknown>) => void,
  ) {
    this.rules = compileRules(actions);
    this.rulesByName = new Map(this.rules.map((rule) => [rule.action.rule.name, rule]));
  }

  get ruleNames(): string[] {
    return this.rules.map((rule) => rule.action.rule.name);
  }

  /**
   * Offers a published message to the rules: resolves when the puts of every matching rule are in the stream, rejects
   * when one failed. `clientId` is the publisher's (undefined for the cloud and the broker itself); `lifecycle`
   * marks the broker's lifecycle events (see the invariants).
   */
  route(topic: string, payload: Buffer | Uint8Array | string, clientId: string | undefined, { lifecycle = false } = {}): Promise<void> {
    if (topic.startsWith('$SYS/')) return Promise.resolve(); // aedes's own heartbeats
    const base = { payload, now: Date.now(), ...(clientId !== undefined ? { clientId } : {}) };
    const ingest = parseBasicIngestTopic(topic);
    if (ingest) {
      const rule = this.rulesByName.get(ingest.ruleName);
      if (!rule || ingest.topic === '') {
        this.log({
          level: 'warn',
          message: rule ? 'Basic Ingest message without a topic after the rule name: dropped' : `Basic Ingest message for unknown rule "${ingest.ruleName}": dropped`,
          topic,
          ...(clientId !== undefined ? { clientId } : {}),
        });
        return Promise.resolve();
      }
      return this.runRule(rule, { ...base, topic: ingest.topic }, topic, lifecycle);
    }
    const puts = this.rules
      .filter((rule) => topicMatches(rule.sql.topicFilter, topic))
      .map((rule) => this.runRule(rule, { ...base, topic }, topic, lifecycle));
    return Promise.all(puts).then(() => undefined);
  }

  private runRule(rule: CompiledRule, message: RuleMessage, publishedTopic: string, lifecycle: boolean): Promise<void> {
    const name = rule.action.rule.name;
    const result = applyRuleSql(rule.sql, message);
    const key = partitionKeyOf(rule.partitionKey, message);
    const problem = !result.ok ? result.problem : !key.ok ? key.problem : undefined;
    if (!result.ok || !key.ok) {
      this.log({ level: 'warn', message: `Rule ${name} not applied to ${publishedTopic}: ${problem}`, rule: name, topic: publishedTopic });
      return Promise.resolve();
    }
    return this.putInOrder(rule, { partitionKey: key.partitionKey, data: result.output }, publishedTopic, lifecycle);
  }

  /** Starts the put once the previous put of the same partition key has settled (see the invariants). */
  private putInOrder(rule: CompiledRule, record: RuleRecord, topic: string, lifecycle: boolean): Promise<void> {
    const name = rule.action.rule.name;
    const { partitionKey } = record;
    const previous = this.putChains.get(partitionKey) ?? Promise.resolve();
    const put = previous.then(
      () => rule.action.put(record),
      (error: unknown) => {
        if (lifecycle) return rule.action.put(record);
        throw error instanceof EarlierPutFailed ? error : new EarlierPutFailed(partitionKey, error);
      },
    );
    const logged = put.catch((error: unknown) => {
      this.log({
        level: 'error',
        message: `Rule ${name} could not put the message into its stream`,
        rule: name,
        topic,
        partitionKey,
        error: describeError(error),
      });
      throw error;
    });
    this.putChains.set(partitionKey, logged);
    this.track(
      logged.catch(() => undefined).finally(() => {
        if (this.putChains.get(partitionKey) === logged) this.putChains.delete(partitionKey);
      }),
    );
    return logged;
  }
}

function compileRules(actions: readonly RuleAction[]): CompiledRule[] {
  const seen = new Set<string>();
  return actions.map((action) => {
    const name = action.rule.name;
    if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`Rule "${name}": IoT rule names allow only letters, digits and underscores`);
    if (seen.has(name)) throw new Error(`Rule ${name} is given twice`);
    seen.add(name);
    return { action, sql: parseRuleSql(action.rule), partitionKey: parsePartitionKey(action.rule) };
  });
}

/** A put not tried because an earlier put of its partition key failed. */
export class EarlierPutFailed extends Error {
  override readonly name = 'EarlierPutFailed';
  constructor(partitionKey: string, cause: unknown) {
    super(`an earlier message with partition key "${partitionKey}" was not put (${describeError(cause)})`, { cause });
  }
}
