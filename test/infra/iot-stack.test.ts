import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addIotStack, addStatefulStack } from '../../infra/heartbeat.js';
import { TOPIC_RULES } from '../../schemas/topics.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

const THING = '${iot:Connection.Thing.ThingName}';
const INGEST_HANDLERS = ['iot-presence', 'iot-telemetry', 'iot-robot-events'];

type Statement = { Sid?: string; Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

describe('IotStack', () => {
  let template: Template;
  let statements: Statement[];

  beforeAll(() => {
    const app = newApp();
    const stateful = addStatefulStack(app, STAGE);
    template = Template.fromStack(addIotStack(app, STAGE, stateful));
    const document = new Capture();
    template.hasResourceProperties('AWS::IoT::Policy', { PolicyDocument: document });
    statements = (document.asObject() as { Statement: Statement[] }).Statement;
  }, BUILD_TIMEOUT);

  /** Every resource of the statements allowing `action`, flattened to `arn:<AWS::Partition>:iot:…:topic/…`. */
  const resourcesFor = (action: string): string[] =>
    statements
      .filter((s) => s.Effect === 'Allow' && [s.Action].flat().includes(action))
      .flatMap((s) => [s.Resource].flat().map(flatten));
  /** The part after `:<type>/`, e.g. `dt/heartbeat/${iot:Connection.Thing.ThingName}/*`. */
  const namesFor = (action: string, type: string): string[] =>
    resourcesFor(action).map((arn) => {
      const marker = `:${type}/`;
      expect(arn, `${action} resource ${arn} is not a ${type}`).toContain(marker);
      return arn.slice(arn.indexOf(marker) + marker.length);
    });

  it('defines the lekiwi and xle thing types and the fleet thing group', () => {
    template.hasResourceProperties('AWS::IoT::ThingType', { ThingTypeName: 'lekiwi' });
    template.hasResourceProperties('AWS::IoT::ThingType', { ThingTypeName: 'xle' });
    template.resourceCountIs('AWS::IoT::ThingType', 2);
    template.hasResourceProperties('AWS::IoT::ThingGroup', { ThingGroupName: 'heartbeat-fleet' });
  });

  describe('thing policy', () => {
    it('lets a robot connect only with its own thing name as client id, from a certificate attached to it', () => {
      expect(namesFor('iot:Connect', 'client')).toEqual([THING]);
      const connect = statements.find((s) => [s.Action].flat().includes('iot:Connect'));
      expect(connect?.Condition).toEqual({ Bool: { 'iot:Connection.Thing.IsAttached': 'true' } });
    });

    it('lets a robot publish only under its own name', () => {
      expect(namesFor('iot:Publish', 'topic')).toEqual(
        expect.arrayContaining([
          `dt/heartbeat/${THING}/*`,
          `$aws/rules/heartbeat_telemetry/dt/heartbeat/${THING}/telemetry`,
          `$aws/things/${THING}/jobs/*`,
        ]),
      );
    });

    it('lets a robot subscribe to and receive only its own commands and jobs', () => {
      expect(namesFor('iot:Subscribe', 'topicfilter').sort()).toEqual(
        [`cmd/heartbeat/${THING}/*`, `$aws/things/${THING}/jobs/*`].sort(),
      );
      expect(namesFor('iot:Receive', 'topic').sort()).toEqual(
        [`cmd/heartbeat/${THING}/*`, `$aws/things/${THING}/jobs/*`].sort(),
      );
    });

    it('names the connected thing in every resource and never a wildcard thing', () => {
      const all = statements.flatMap((s) => [s.Resource].flat().map(flatten));
      expect(all.length).toBeGreaterThan(0);
      for (const arn of all) {
        expect(arn).toContain(THING);
        // The thing segment is the policy variable, never `*`, `+` or `#`.
        expect(arn).not.toMatch(/:client\/[*+#]|\/heartbeat\/[*+#]\/|\/things\/[*+#]\//);
      }
      // Fn::Join keeps `${iot:...}` literal; Fn::Sub would try to resolve it.
      expect(JSON.stringify(statements)).not.toContain('Fn::Sub');
      expect(statements.every((s) => s.Effect === 'Allow')).toBe(true);
      expect(statements.flatMap((s) => [s.Action].flat()).every((a) => !a.includes('*'))).toBe(true);
    });
  });

  describe('topic rules', () => {
    const functions = () => functionsByHandler(template);

    it.each(Object.entries(TOPIC_RULES))('%s: the shared SQL, a Lambda action to its handler and an error action', (_key, rule) => {
      const target = functions().get(rule.target);
      expect(target, `no function for ${rule.target}`).toBeDefined();
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        RuleName: rule.name,
        TopicRulePayload: Match.objectLike({
          Sql: rule.sql,
          AwsIotSqlVersion: '2016-03-23',
          RuleDisabled: false,
          Actions: [{ Lambda: { FunctionArn: { 'Fn::GetAtt': [target!.logicalId, 'Arn'] } } }],
          ErrorAction: { Sqs: Match.objectLike({ QueueUrl: Match.anyValue(), RoleArn: Match.anyValue() }) },
        }),
      });
    });

    it('exist once per TOPIC_RULES entry', () => {
      template.resourceCountIs('AWS::IoT::TopicRule', Object.keys(TOPIC_RULES).length);
    });

    it.each(Object.entries(TOPIC_RULES))('%s: IoT may invoke the handler, from that rule only', (_key, rule) => {
      const rules = template.findResources('AWS::IoT::TopicRule', { Properties: { RuleName: rule.name } });
      const ruleLogicalId = Object.keys(rules)[0]!;
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunction',
        Principal: 'iot.amazonaws.com',
        FunctionName: { 'Fn::GetAtt': [functions().get(rule.target)!.logicalId, 'Arn'] },
        SourceArn: { 'Fn::GetAtt': [ruleLogicalId, 'Arn'] },
        SourceAccount: { Ref: 'AWS::AccountId' },
      });
    });

    it('send undeliverable messages to the rule error queue through a role IoT can assume', () => {
      const roleArn = new Capture();
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        TopicRulePayload: Match.objectLike({ ErrorAction: { Sqs: Match.objectLike({ RoleArn: roleArn }) } }),
      });
      const roleId = (roleArn.asObject() as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0]!;
      template.hasResourceProperties('AWS::IAM::Role', {
        AssumeRolePolicyDocument: Match.objectLike({
          Statement: [Match.objectLike({ Principal: { Service: 'iot.amazonaws.com' } })],
        }),
      });
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: roleId }],
        PolicyDocument: Match.objectLike({
          Statement: Match.arrayWith([
            Match.objectLike({ Action: Match.arrayWith(['sqs:SendMessage']), Effect: 'Allow' }),
          ]),
        }),
      });
    });
  });

  describe('ingest functions', () => {
    it('are arm64, outside the VPC, with the event log table and a dead-letter queue', () => {
      const functions = functionsByHandler(template);
      expect([...functions.keys()].sort()).toEqual([...INGEST_HANDLERS].sort());
      for (const [name, fn] of functions) {
        expect(fn.properties.Architectures, name).toEqual(['arm64']);
        expect(fn.properties.VpcConfig, name).toBeUndefined();
        expect(fn.properties.Environment.Variables.EVENT_LOG_TABLE, name).toBeDefined();
        expect(fn.properties.DeadLetterConfig?.TargetArn, name).toBeDefined();
        expect(fn.properties.TracingConfig, name).toEqual({ Mode: 'Active' });
      }
    });
  });
});
