import { describe, expect, it } from 'vitest';
import { TOPIC_RULES } from '../../schemas/topics.js';
import {
  RuleSqlError,
  applyRuleSql,
  parseBasicIngestTopic,
  parsePartitionKey,
  parseRuleSql,
  partitionKeyOf,
  topicFilterProblem,
  topicMatches,
} from '../../local/topic-rules.js';

const rule = (sql: string, topicFilter = 'dt/heartbeat/+/telemetry') => ({ name: 'test_rule', sql, topicFilter });

describe('parseRuleSql', () => {
  it('parses every rule the system deploys', () => {
    expect(parseRuleSql(TOPIC_RULES.presence)).toEqual({
      topicFilter: '$aws/events/presence/+/+',
      projections: [{ kind: 'topic', alias: 'topic' }],
    });
    expect(parseRuleSql(TOPIC_RULES.telemetry)).toEqual({
      topicFilter: 'dt/heartbeat/+/telemetry',
      projections: [
        { kind: 'topic', index: 3, alias: 'thingName' },
        { kind: 'topic', alias: 'topic' },
      ],
    });
    expect(parseRuleSql(TOPIC_RULES.events).projections).toEqual([
      { kind: 'topic', index: 3, alias: 'thingName' },
      { kind: 'topic', alias: 'topic' },
    ]);
  });

  it('reads topic() without an argument as the whole topic', () => {
    const parsed = parseRuleSql(rule("SELECT *, Topic( ) as t FROM 'dt/heartbeat/+/telemetry'"));
    expect(parsed.projections).toEqual([{ kind: 'topic', alias: 't' }]);
    expect(parsed.projections[0]).not.toHaveProperty('index');
  });

  it('accepts timestamp() and clientid(), any keyword case and spacing', () => {
    expect(
      parseRuleSql(rule("select  *,topic( 3 ) as thingName , TIMESTAMP() AS receivedAt, clientId() As client from 'dt/heartbeat/+/telemetry'")),
    ).toEqual({
      topicFilter: 'dt/heartbeat/+/telemetry',
      projections: [
        { kind: 'topic', index: 3, alias: 'thingName' },
        { kind: 'timestamp', alias: 'receivedAt' },
        { kind: 'clientid', alias: 'client' },
      ],
    });
  });

  it.each([
    ["SELECT temperature FROM 'dt/heartbeat/+/telemetry'", /unsupported SQL/],
    ["SELECT * FROM 'dt/heartbeat/+/telemetry' WHERE cpuPercent > 90", /unsupported SQL/],
    ["SELECT *, topic(3) FROM 'dt/heartbeat/+/telemetry'", /unsupported select item "topic\(3\)"/],
    ["SELECT *, upper(topic(3)) AS x FROM 'dt/heartbeat/+/telemetry'", /unsupported select item/],
    ["SELECT *, topic(0) AS x FROM 'dt/heartbeat/+/telemetry'", /topic\(0\) must count levels from 1/],
    ["SELECT *, topic(-1) AS x FROM 'dt/heartbeat/+/telemetry'", /unsupported select item/],
    ["SELECT *, topic() AS x, topic(3) AS x FROM 'dt/heartbeat/+/telemetry'", /alias x is used twice/],
    ["SELECT *, topic(3) AS x, timestamp() AS x FROM 'dt/heartbeat/+/telemetry'", /alias x is used twice/],
    ["SELECT * FROM 'dt/heartbeat/#/telemetry'", /uses # other than/],
    ["SELECT * FROM 'dt/heartbeat/a+/telemetry'", /uses \+ other than/],
    ["SELECT * FROM 'dt/heartbeat/+/events'", /differs from the rule's topicFilter/],
    ['', /unsupported SQL/],
  ])('refuses %j, naming the rule', (sql, problem) => {
    const parse = () => parseRuleSql(rule(sql));
    expect(parse).toThrow(RuleSqlError);
    expect(parse).toThrow(/^Rule test_rule: /);
    expect(parse).toThrow(problem);
  });
});

describe('topic matching', () => {
  it.each([
    ['dt/heartbeat/+/telemetry', 'dt/heartbeat/lekiwi-1/telemetry', true],
    ['dt/heartbeat/+/telemetry', 'dt/heartbeat/lekiwi-1/events', false],
    ['dt/heartbeat/+/telemetry', 'dt/heartbeat/lekiwi-1/telemetry/x', false],
    ['dt/heartbeat/+/telemetry', 'dt/heartbeat/telemetry', false],
    ['dt/#', 'dt', true],
    ['dt/#', 'dt/a/b', true],
    ['#', '$aws/events/presence/connected/x', false],
    ['+/events/presence/+/+', '$aws/events/presence/connected/x', false],
    ['$aws/events/presence/+/+', '$aws/events/presence/connected/lekiwi-1', true],
    ['$aws/events/presence/+/+', '$aws/events/presence/connected', false],
    ['a/+', 'a/', true],
  ])('%s against %s → %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });

  it('validates filters', () => {
    expect(topicFilterProblem('a/+/#')).toBeUndefined();
    expect(topicFilterProblem('')).toBe('is empty');
    expect(topicFilterProblem('a/#/b')).toMatch(/#/);
  });

  it('splits Basic Ingest topics', () => {
    expect(parseBasicIngestTopic('$aws/rules/heartbeat_telemetry/dt/heartbeat/x/telemetry')).toEqual({
      ruleName: 'heartbeat_telemetry',
      topic: 'dt/heartbeat/x/telemetry',
    });
    expect(parseBasicIngestTopic('$aws/rules/heartbeat_telemetry')).toEqual({ ruleName: 'heartbeat_telemetry', topic: '' });
    expect(parseBasicIngestTopic('dt/heartbeat/x/telemetry')).toBeUndefined();
  });
});

describe('applyRuleSql', () => {
  const sql = parseRuleSql(
    rule("SELECT *, topic(3) AS thingName, timestamp() AS at, clientid() AS client FROM 'dt/heartbeat/+/telemetry'"),
  );
  const message = { topic: 'dt/heartbeat/lekiwi-1/telemetry', now: 1_700_000_000_123, clientId: 'lekiwi-1' };

  it('adds the projected fields to the payload object, over same-named payload fields', () => {
    const result = applyRuleSql(sql, { ...message, payload: Buffer.from('{"cpuPercent":12,"thingName":"forged"}') });
    expect(result).toEqual({
      ok: true,
      output: { cpuPercent: 12, thingName: 'lekiwi-1', at: 1_700_000_000_123, client: 'lekiwi-1' },
    });
  });

  it('adds the whole topic for topic(), next to topic(N), over a same-named payload field', () => {
    const whole = parseRuleSql(TOPIC_RULES.telemetry);
    const result = applyRuleSql(whole, { ...message, payload: '{"topic":"forged","cpuPercent":1}' });
    expect(result).toEqual({
      ok: true,
      output: { cpuPercent: 1, thingName: 'lekiwi-1', topic: 'dt/heartbeat/lekiwi-1/telemetry' },
    });
  });

  it('gives a Basic Ingest message the topic after $aws/rules/<rule>/, as the broker hands it over', () => {
    const published = `$aws/rules/${TOPIC_RULES.telemetry.name}/dt/heartbeat/lekiwi-2/telemetry`;
    const ingest = parseBasicIngestTopic(published)!;
    const result = applyRuleSql(parseRuleSql(TOPIC_RULES.telemetry), { topic: ingest.topic, now: 0, payload: '{}' });
    expect(result).toEqual({ ok: true, output: { thingName: 'lekiwi-2', topic: 'dt/heartbeat/lekiwi-2/telemetry' } });
  });

  it('leaves out a topic level past the end and the client id of a cloud-published message', () => {
    const short = parseRuleSql(rule("SELECT *, topic(9) AS deep, clientid() AS client FROM 'dt/#'", 'dt/#'));
    const result = applyRuleSql(short, { topic: 'dt/a', now: 0, payload: '{"deep":1,"client":2,"keep":3}' });
    expect(result).toEqual({ ok: true, output: { keep: 3 } });
  });

  it.each([
    ['not json', /not JSON/],
    ['', /not JSON \(empty\)/],
    ['[1,2]', /not an object \(an array\)/],
    ['42', /not an object \(number\)/],
    ['null', /not an object/],
    ['"text"', /not an object \(string\)/],
  ])('gives a problem, not an output, for the payload %j', (payload, problem) => {
    const result = applyRuleSql(sql, { ...message, payload });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problem).toMatch(problem);
  });
});

describe('partition keys', () => {
  const key = (partitionKey: string) => ({ name: 'test_rule', partitionKey });

  it('parses and evaluates every rule the system deploys: the robot is the key', () => {
    expect(partitionKeyOf(parsePartitionKey(TOPIC_RULES.presence), { topic: '$aws/events/presence/connected/lekiwi-1' })).toEqual({
      ok: true,
      partitionKey: 'lekiwi-1',
    });
    for (const rule of [TOPIC_RULES.telemetry, TOPIC_RULES.events]) {
      const topic = `dt/heartbeat/lekiwi-2/${rule === TOPIC_RULES.telemetry ? 'telemetry' : 'events'}`;
      expect(partitionKeyOf(parsePartitionKey(rule), { topic, clientId: 'someone' })).toEqual({ ok: true, partitionKey: 'lekiwi-2' });
    }
  });

  it('substitutes topic(N), topic() and clientid() between literal text, in any case and spacing', () => {
    const template = parsePartitionKey(key('robot-${ topic(3) }/${TOPIC()}#${clientId()}$x{y}'));
    expect(template.parts).toEqual([
      { kind: 'text', text: 'robot-' },
      { kind: 'topic', index: 3 },
      { kind: 'text', text: '/' },
      { kind: 'topic' },
      { kind: 'text', text: '#' },
      { kind: 'clientid' },
      { kind: 'text', text: '$x{y}' },
    ]);
    expect(partitionKeyOf(template, { topic: 'dt/heartbeat/a/telemetry', clientId: 'c' })).toEqual({
      ok: true,
      partitionKey: 'robot-a/dt/heartbeat/a/telemetry#c$x{y}',
    });
    expect(parsePartitionKey(key('fixed')).parts).toEqual([{ kind: 'text', text: 'fixed' }]);
  });

  it('leaves a missing level or client id empty, and refuses a key that comes out empty or too long', () => {
    expect(partitionKeyOf(parsePartitionKey(key('k-${topic(9)}${clientid()}')), { topic: 'a/b' })).toEqual({ ok: true, partitionKey: 'k-' });
    const empty = partitionKeyOf(parsePartitionKey(key('${topic(3)}')), { topic: 'dt/heartbeat//telemetry' });
    expect(empty).toEqual({ ok: false, problem: expect.stringMatching(/is empty for dt\/heartbeat\/\/telemetry/) });
    const long = partitionKeyOf(parsePartitionKey(key('${topic()}')), { topic: 'x'.repeat(257) });
    expect(long).toEqual({ ok: false, problem: expect.stringMatching(/longer than 256/) });
    expect(partitionKeyOf(parsePartitionKey(key('${topic()}')), { topic: 'é'.repeat(256) }).ok).toBe(true);
  });

  it.each([
    ['', /nothing/],
    ['${topic(3)', /unclosed/],
    ['${newuuid()}', /unsupported substitution "\$\{newuuid\(\)\}"/],
    ['${thingName}', /unsupported substitution/],
    ['${topic(0)}', /topic\(0\) must count levels from 1/],
    ['${topic(3) AS x}', /unsupported substitution/],
    ['${}', /unsupported substitution/],
  ])('refuses the template %j, naming the rule', (template, problem) => {
    const parse = () => parsePartitionKey(key(template));
    expect(parse).toThrow(RuleSqlError);
    expect(parse).toThrow(/^Rule test_rule: /);
    expect(parse).toThrow(problem);
  });
});
