import type { TopicRule } from '../schemas/topics.js';

/**
 * The local rules engine: the part of IoT Core's SQL our rules use, and MQTT topic matching. A rule's SQL is parsed
 * once when the broker starts; anything outside the supported subset throws then, naming the rule, instead of
 * behaving differently from IoT Core later. Supported:
 *
 *   SELECT * FROM '<topic filter>'
 *   SELECT *, topic(N) AS <name>[, topic() AS <name>][, timestamp() AS <name>][, clientid() AS <name>] FROM '<topic filter>'
 *
 * (keywords in any case; the added fields in any order, each alias once). `topic()` is the whole topic and `topic(N)`
 * its N-th level, both as the rule sees it: for Basic Ingest without the `$aws/rules/<rule>/` prefix, as IoT Core does.
 *
 * A rule's Kinesis partition key is an IoT substitution template, also parsed at start: literal text around
 * `${topic(N)}`, `${topic()}` and `${clientid()}`.
 */

export type Projection =
  /** `topic(N)`: level N, counting from 1; `topic()` (no index): the whole topic. */
  | { readonly kind: 'topic'; readonly index?: number; readonly alias: string }
  | { readonly kind: 'timestamp'; readonly alias: string }
  | { readonly kind: 'clientid'; readonly alias: string };

export interface ParsedRuleSql {
  readonly topicFilter: string;
  /** Fields added to the payload object, in SQL order (they win over same-named payload fields). */
  readonly projections: readonly Projection[];
}

export class RuleSqlError extends Error {
  override readonly name = 'RuleSqlError';
}

const SUPPORTED =
  "the local rules engine supports only SELECT * [, topic(N) AS name | topic() AS name | timestamp() AS name | clientid() AS name ...] FROM '<topic filter>'";
const STATEMENT = /^\s*SELECT\s+\*\s*((?:,[^,]+?)*)\s+FROM\s+'([^']*)'\s*;?\s*$/is;
const PROJECTION = /^\s*(?:(topic)\s*\(\s*(\d*)\s*\)|(timestamp)\s*\(\s*\)|(clientid)\s*\(\s*\))\s+AS\s+([A-Za-z_][A-Za-z0-9_]*)\s*$/i;

/** Parses a rule's SQL; throws RuleSqlError naming the rule for anything unsupported or inconsistent. */
export function parseRuleSql(rule: Pick<TopicRule, 'name' | 'sql' | 'topicFilter'>): ParsedRuleSql {
  const fail = (problem: string): never => {
    throw new RuleSqlError(`Rule ${rule.name}: ${problem} in "${rule.sql}"`);
  };
  const statement = STATEMENT.exec(rule.sql);
  if (!statement) return fail(`unsupported SQL (${SUPPORTED})`);
  const [, selectList = '', topicFilter = ''] = statement;
  const filterProblem = topicFilterProblem(topicFilter);
  if (filterProblem) fail(`the FROM topic filter '${topicFilter}' ${filterProblem}`);
  if (topicFilter !== rule.topicFilter) {
    fail(`the FROM topic filter '${topicFilter}' differs from the rule's topicFilter '${rule.topicFilter}'`);
  }
  const projections: Projection[] = [];
  const aliases = new Set<string>();
  for (const item of selectList.split(',').slice(1)) {
    const match = PROJECTION.exec(item);
    if (!match) return fail(`unsupported select item "${item.trim()}" (${SUPPORTED})`);
    const [, topicFn, index, timestampFn, , alias = ''] = match;
    if (aliases.has(alias)) fail(`the alias ${alias} is used twice`);
    aliases.add(alias);
    if (topicFn && index === '') {
      projections.push({ kind: 'topic', alias });
    } else if (topicFn) {
      const n = Number(index);
      if (!Number.isSafeInteger(n) || n < 1) fail(`topic(${index}) must count levels from 1`);
      projections.push({ kind: 'topic', index: n, alias });
    } else {
      projections.push(timestampFn ? { kind: 'timestamp', alias } : { kind: 'clientid', alias });
    }
  }
  return { topicFilter, projections };
}

/** Why a string is not a valid MQTT topic filter, or undefined if it is one. */
export function topicFilterProblem(filter: string): string | undefined {
  if (filter.length === 0) return 'is empty';
  const levels = filter.split('/');
  for (const [i, level] of levels.entries()) {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return 'uses # other than as the whole last level';
    if (level.includes('+') && level !== '+') return 'uses + other than as a whole level';
  }
  return undefined;
}

/**
 * MQTT 3.1.1 topic matching: `+` one level, `#` the rest (including the parent level), and a filter starting with a
 * wildcard never matches a `$` topic.
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i];
    if (level === '#') return true;
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return filterLevels.length === topicLevels.length;
}

const BASIC_INGEST_PREFIX = '$aws/rules/';

/** `$aws/rules/<ruleName>/<topic>` → its parts; undefined for any other topic. `topic` is '' when missing. */
export function parseBasicIngestTopic(topic: string): { readonly ruleName: string; readonly topic: string } | undefined {
  if (!topic.startsWith(BASIC_INGEST_PREFIX)) return undefined;
  const rest = topic.slice(BASIC_INGEST_PREFIX.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? { ruleName: rest, topic: '' } : { ruleName: rest.slice(0, slash), topic: rest.slice(slash + 1) };
}

export interface RuleMessage {
  /** The topic the SQL sees: for Basic Ingest, without the `$aws/rules/<rule>/` prefix. */
  readonly topic: string;
  readonly payload: Buffer | Uint8Array | string;
  /** The publishing client's id; absent for messages the cloud itself published. */
  readonly clientId?: string;
  /** Milliseconds since the epoch, for `timestamp()`. */
  readonly now: number;
}

export type RuleOutput = { readonly ok: true; readonly output: Record<string, unknown> } | { readonly ok: false; readonly problem: string };

/**
 * The SQL's output for one message: the payload's JSON object with the projected fields added. A payload that is
 * not a JSON object gives a problem instead (IoT Core's `SELECT *` cannot make a record of it). A `topic(N)` past
 * the topic's last level, or `clientid()` of a cloud-published message, yields no field, as IoT Core leaves it out.
 */
export function applyRuleSql(sql: ParsedRuleSql, message: RuleMessage): RuleOutput {
  const text = typeof message.payload === 'string' ? message.payload : Buffer.from(message.payload).toString('utf8');
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    return { ok: false, problem: `the payload is not JSON (${describePayload(text)})` };
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, problem: `the payload is JSON but not an object (${Array.isArray(payload) ? 'an array' : typeof payload})` };
  }
  const output: Record<string, unknown> = { ...(payload as Record<string, unknown>) };
  const levels = message.topic.split('/');
  for (const projection of sql.projections) {
    const value =
      projection.kind === 'topic'
        ? topicPart(message.topic, levels, projection.index)
        : projection.kind === 'timestamp'
          ? message.now
          : message.clientId;
    if (value === undefined) delete output[projection.alias];
    else output[projection.alias] = value;
  }
  return { ok: true, output };
}

/** `topic()` (index undefined) or `topic(N)`; undefined past the last level. */
function topicPart(topic: string, levels: readonly string[], index: number | undefined): string | undefined {
  return index === undefined ? topic : levels[index - 1];
}

export type PartitionKeyPart =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'topic'; readonly index?: number }
  | { readonly kind: 'clientid' };

/** A parsed partition key substitution template: its parts in order. */
export interface PartitionKeyTemplate {
  readonly template: string;
  readonly parts: readonly PartitionKeyPart[];
}

/** Kinesis takes partition keys of 1 to 256 Unicode characters. */
const MAX_PARTITION_KEY_LENGTH = 256;
const SUBSTITUTION = /^\s*(?:(topic)\s*\(\s*(\d*)\s*\)|(clientid)\s*\(\s*\))\s*$/i;

/**
 * Parses a rule's Kinesis partition key, an IoT substitution template: literal text with `${topic(N)}`, `${topic()}`
 * and `${clientid()}` in it. Throws RuleSqlError naming the rule for any other expression, an unclosed `${`, or an
 * empty template (Kinesis needs a key).
 */
export function parsePartitionKey(rule: Pick<TopicRule, 'name' | 'partitionKey'>): PartitionKeyTemplate {
  const template = rule.partitionKey;
  const fail = (problem: string): never => {
    throw new RuleSqlError(`Rule ${rule.name}: ${problem} in the partition key "${template}"`);
  };
  if (template.length === 0) fail('nothing (Kinesis needs a key)');
  const parts: PartitionKeyPart[] = [];
  let rest = template;
  while (rest.length > 0) {
    const start = rest.indexOf('${');
    if (start < 0) {
      parts.push({ kind: 'text', text: rest });
      break;
    }
    if (start > 0) parts.push({ kind: 'text', text: rest.slice(0, start) });
    const end = rest.indexOf('}', start + 2);
    if (end < 0) return fail(`an unclosed "\${"`);
    const expression = rest.slice(start + 2, end);
    const match = SUBSTITUTION.exec(expression);
    if (!match) {
      return fail(`the unsupported substitution "\${${expression}}" (the local rules engine supports \${topic(N)}, \${topic()} and \${clientid()})`);
    }
    const [, topicFn, index, clientidFn] = match;
    if (topicFn && index !== '') {
      const n = Number(index);
      if (!Number.isSafeInteger(n) || n < 1) fail(`topic(${index}) must count levels from 1`);
      parts.push({ kind: 'topic', index: n });
    } else if (topicFn) {
      parts.push({ kind: 'topic' });
    } else if (clientidFn) {
      parts.push({ kind: 'clientid' });
    }
    rest = rest.slice(end + 1);
  }
  return { template, parts };
}

export type PartitionKeyResult = { readonly ok: true; readonly partitionKey: string } | { readonly ok: false; readonly problem: string };

/**
 * The partition key for one message. A `topic(N)` past the last level, or `clientid()` of a message the cloud
 * published, is empty; a key that comes out empty or longer than Kinesis allows (256 characters) is a problem, as
 * the Kinesis action would fail in IoT Core.
 */
export function partitionKeyOf(template: PartitionKeyTemplate, message: Pick<RuleMessage, 'topic' | 'clientId'>): PartitionKeyResult {
  const levels = message.topic.split('/');
  const partitionKey = template.parts
    .map((part) =>
      part.kind === 'text' ? part.text : part.kind === 'topic' ? (topicPart(message.topic, levels, part.index) ?? '') : (message.clientId ?? ''),
    )
    .join('');
  if (partitionKey.length === 0) return { ok: false, problem: `the partition key "${template.template}" is empty for ${message.topic}` };
  if ([...partitionKey].length > MAX_PARTITION_KEY_LENGTH) {
    return { ok: false, problem: `the partition key "${template.template}" is longer than ${MAX_PARTITION_KEY_LENGTH} characters for ${message.topic}` };
  }
  return { ok: true, partitionKey };
}

function describePayload(text: string): string {
  if (text.length === 0) return 'empty';
  return text.length > 40 ? `starts ${JSON.stringify(text.slice(0, 40))}` : JSON.stringify(text);
}
