import { describe, expect, it } from 'vitest';
import { TOPIC_RULES } from '../../schemas/topics.js';
import type { BrokerLogEntry, RuleAction, RuleRecord } from '../../local/iot-broker/contract.js';
import { PendingWork } from '../../local/iot-broker/contract.js';
import { RulesEngine } from '../../local/iot-broker/rules-engine.js';

const A = 'lekiwi-LK0001';
const B = 'lekiwi-LK0002';

/** A put the test settles by hand, in whatever order it wants. */
interface HeldPut {
  readonly record: RuleRecord;
  resolve(): void;
  reject(error: Error): void;
}

function heldRule(rule: RuleAction['rule']): { action: RuleAction; started: HeldPut[] } {
  const started: HeldPut[] = [];
  const action: RuleAction = {
    rule,
    put: (record) => new Promise<void>((resolve, reject) => void started.push({ record, resolve, reject })),
  };
  return { action, started };
}

const telemetry = (thing: string, id: string) => [`dt/heartbeat/${thing}/telemetry`, JSON.stringify({ id })] as const;
const ids = (puts: HeldPut[]) => puts.map((put) => put.record.data.id ?? put.record.data.eventType);
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('the rules engine', () => {
  it('refuses bad rules when made, naming them', () => {
    const log = () => undefined;
    const put = async () => undefined;
    expect(() => new RulesEngine([{ rule: { ...TOPIC_RULES.telemetry, name: 'bad-name' }, put }], log, () => undefined)).toThrow(/"bad-name"/);
    expect(() => new RulesEngine([{ rule: TOPIC_RULES.telemetry, put }, { rule: TOPIC_RULES.telemetry, put }], log, () => undefined)).toThrow(/given twice/);
  });

  it("puts one key's records one after another in call order, other keys alongside", async () => {
    const { action, started } = heldRule(TOPIC_RULES.telemetry);
    const work = new PendingWork();
    const engine = new RulesEngine([action], () => undefined, work.track);
    const first = engine.route(...telemetry(A, 'a1'), A);
    const second = engine.route(...telemetry(A, 'a2'), A);
    void engine.route(...telemetry(B, 'b1'), B);
    await settle();
    expect(ids(started)).toEqual(['a1', 'b1']); // a2 waits for a1
    expect(started[0]!.record).toEqual({ partitionKey: A, data: { id: 'a1', thingName: A, topic: `dt/heartbeat/${A}/telemetry` } });
    started[0]!.resolve();
    await first;
    await settle();
    expect(ids(started)).toEqual(['a1', 'b1', 'a2']);
    started[2]!.resolve();
    started[1]!.resolve();
    await second;
    await work.idle();
  });

  it("fails a message queued behind a failed put untried, but still puts a lifecycle event", async () => {
    const telemetryRule = heldRule(TOPIC_RULES.telemetry);
    const presenceRule = heldRule(TOPIC_RULES.presence);
    const logs: BrokerLogEntry[] = [];
    const engine = new RulesEngine([telemetryRule.action, presenceRule.action], (entry) => void logs.push(entry), () => undefined);
    const failing = engine.route(...telemetry(A, 'a1'), A);
    const behind = engine.route(...telemetry(A, 'a2'), A);
    // The presence rule keys by client id, the telemetry rule by thing name: one chain for the robot.
    const lifecycle = engine.route(`$aws/events/presence/disconnected/${A}`, JSON.stringify({ eventType: 'disconnected' }), undefined, { lifecycle: true });
    await settle();
    telemetryRule.started[0]!.reject(new Error('stream down'));
    await expect(failing).rejects.toThrow('stream down');
    await expect(behind).rejects.toThrow(/an earlier message with partition key "lekiwi-LK0001" was not put \(stream down\)/);
    await settle();
    expect(ids(telemetryRule.started)).toEqual(['a1']);
    expect(ids(presenceRule.started)).toEqual(['disconnected']);
    presenceRule.started[0]!.resolve();
    await lifecycle;
    expect(logs.filter((entry) => entry.level === 'error')).toHaveLength(2);
  });

  it('passes over what a rule cannot take, and drops Basic Ingest for unknown rules, with a warning', async () => {
    const { action, started } = heldRule(TOPIC_RULES.telemetry);
    const logs: BrokerLogEntry[] = [];
    const engine = new RulesEngine([action], (entry) => void logs.push(entry), () => undefined);
    await engine.route(`dt/heartbeat/${A}/telemetry`, 'not json', A);
    await engine.route(`$aws/rules/no_such_rule/dt/heartbeat/${A}/telemetry`, '{}', A);
    await engine.route('$SYS/broker/uptime', '{}', undefined);
    expect(started).toEqual([]);
    expect(logs.map((entry) => entry.message)).toEqual([
      expect.stringMatching(/^Rule heartbeat_telemetry not applied to .*not JSON/),
      expect.stringMatching(/unknown rule "no_such_rule"/),
    ]);
  });
});
