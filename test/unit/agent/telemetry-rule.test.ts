import { describe, expect, it } from 'vitest';
import { AgentConfigError, parseAgentConfig } from '../../../agent/config.js';
import { TelemetryReporter } from '../../../agent/telemetry-reporter.js';
import { isAllowed, thingPolicy } from '../../../schemas/thing-policy.js';
import { TOPIC_RULES, topicRuleName } from '../../../schemas/topics.js';

/**
 * Each deployed stage has its own telemetry rule (`heartbeat_telemetry_<stage>`): the agent publishes Basic Ingest to
 * the rule its config names, which is the one the stage's thing policy allows.
 */
const THING = 'lekiwi-LK0001';
const base = { endpoint: 'example-ats.iot.eu-west-1.amazonaws.com', thingName: THING, certificateFile: 'c.pem', privateKeyFile: 'k.pem', stateDir: 'state' };

const topicOf = (config: ReturnType<typeof parseAgentConfig>): string =>
  new TelemetryReporter({ config, link: {} as never, reader: {} as never, clock: { now: () => 0 }, log: {} as never }).topic;

describe('the telemetry rule of a stage', () => {
  it('is the agent config `telemetryRule`, and Basic Ingest goes to it, as the stage thing policy allows', () => {
    const rule = topicRuleName(TOPIC_RULES.telemetry, 'prod');
    expect(rule).toBe('heartbeat_telemetry_prod');
    const config = parseAgentConfig({ ...base, telemetryRule: rule }, '/etc/heartbeat/agent.json');
    expect(config.telemetryRule).toBe(rule);
    const topic = topicOf(config);
    expect(topic).toBe(`$aws/rules/heartbeat_telemetry_prod/dt/heartbeat/${THING}/telemetry`);
    expect(isAllowed('Publish', THING, topic, thingPolicy(rule))).toBe(true);
    // Another stage's policy does not let this robot into the prod rule.
    expect(isAllowed('Publish', THING, topic, thingPolicy(topicRuleName(TOPIC_RULES.telemetry, 'dev')))).toBe(false);
  });

  it('defaults to the local cloud rule (no stage)', () => {
    const config = parseAgentConfig(base, '/etc/heartbeat/agent.json');
    expect(config.telemetryRule).toBe(TOPIC_RULES.telemetry.name);
    expect(topicOf(config)).toBe(`$aws/rules/${TOPIC_RULES.telemetry.name}/dt/heartbeat/${THING}/telemetry`);
  });

  it('refuses a name IoT Core would not accept, naming the field', () => {
    expect(() => parseAgentConfig({ ...base, telemetryRule: 'heartbeat-telemetry/prod' }, '/x/agent.json')).toThrow(AgentConfigError);
    expect(() => parseAgentConfig({ ...base, telemetryRule: 'heartbeat-telemetry/prod' }, '/x/agent.json')).toThrow(/telemetryRule:/);
  });

  it('topicRuleName refuses a stage that cannot be part of a rule name', () => {
    expect(() => topicRuleName(TOPIC_RULES.telemetry, 'Prod')).toThrow(/stage "Prod"/);
  });
});
