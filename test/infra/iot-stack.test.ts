import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addIotStack, addStatefulStack } from '../../infra/heartbeat.js';
import { thingGroupName, thingTypeName } from '../../infra/stacks/iot-stack.js';
import { TOPIC_RULES, topicRuleName } from '../../schemas/topics.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

const THING = '${iot:Connection.Thing.ThingName}';

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

  it("defines the lekiwi and xle thing types and the fleet thing group, named after the stage, and outputs their names", () => {
    expect(thingTypeName(STAGE.stage, 'lekiwi')).toBe(`heartbeat-${STAGE.stage}-lekiwi`);
    template.hasResourceProperties('AWS::IoT::ThingType', { ThingTypeName: `heartbeat-${STAGE.stage}-lekiwi` });
    template.hasResourceProperties('AWS::IoT::ThingType', { ThingTypeName: `heartbeat-${STAGE.stage}-xle` });
    template.resourceCountIs('AWS::IoT::ThingType', 2);
    template.hasResourceProperties('AWS::IoT::ThingGroup', { ThingGroupName: thingGroupName(STAGE.stage) });
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    const [groupId] = Object.keys(template.findResources('AWS::IoT::ThingGroup'));
    expect(outputs.ThingGroupName?.Value).toEqual({ Ref: groupId });
    const [telemetryRuleId] = Object.entries(template.findResources('AWS::IoT::TopicRule')).find(
      ([, rule]) => rule.Properties.RuleName === topicRuleName(TOPIC_RULES.telemetry, STAGE.stage),
    )!;
    expect(outputs.TelemetryRuleName?.Value).toEqual({ Ref: telemetryRuleId });
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
          // Basic Ingest into this stage's telemetry rule.
          `$aws/rules/heartbeat_telemetry_${STAGE.stage}/dt/heartbeat/${THING}/telemetry`,
          `$aws/things/${THING}/jobs/*`,
        ]),
      );
      // Not the telemetry rule of the local cloud or of another stage.
      expect(namesFor('iot:Publish', 'topic').filter((name) => name.startsWith('$aws/rules/'))).toEqual([
        `$aws/rules/heartbeat_telemetry_${STAGE.stage}/dt/heartbeat/${THING}/telemetry`,
      ]);
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
    const streamRef = () => {
      const streams = template.findResources('AWS::Kinesis::Stream');
      expect(Object.keys(streams)).toEqual([]); // the stream lives in the stateful stack
      const name = new Capture();
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        TopicRulePayload: Match.objectLike({ Actions: [{ Kinesis: Match.objectLike({ StreamName: name }) }] }),
      });
      return name.asObject();
    };

    it.each(Object.entries(TOPIC_RULES))('%s: the shared SQL into the ingest stream, keyed by robot, and an error action', (_key, rule) => {
      const stream = streamRef();
      template.hasResourceProperties('AWS::IoT::TopicRule', {
        RuleName: topicRuleName(rule, STAGE.stage),
        TopicRulePayload: Match.objectLike({
          Sql: rule.sql,
          AwsIotSqlVersion: '2016-03-23',
          RuleDisabled: false,
          Actions: [{ Kinesis: { StreamName: stream, PartitionKey: rule.partitionKey, RoleArn: Match.anyValue() } }],
          ErrorAction: { Sqs: Match.objectLike({ QueueUrl: Match.anyValue(), RoleArn: Match.anyValue() }) },
        }),
      });
      expect(rule.sql).toContain('topic() AS topic');
    });

    it('exist once per TOPIC_RULES entry, and no ingest rule invokes a Lambda per message', () => {
      // Plus certificate rotation's rule (certificate-rotation.test.ts) and the deployments' artifact-urls and
      // job-events rules (deployments.test.ts), which invoke their functions: not ingest.
      template.resourceCountIs('AWS::IoT::TopicRule', Object.keys(TOPIC_RULES).length + 3);
      const ingestRules = Object.values(template.findResources('AWS::IoT::TopicRule')).filter((rule) =>
        Object.values(TOPIC_RULES).some((topicRule) => rule.Properties.TopicRulePayload.Sql === topicRule.sql),
      );
      expect(ingestRules).toHaveLength(Object.keys(TOPIC_RULES).length);
      expect(JSON.stringify(ingestRules)).not.toContain('"Lambda"');
      // The one invoke permission is the pre-provisioning hook's, for the provisioning template (provisioning.test.ts).
      const ingestId = functionsByHandler(template).get('robot-ingest')!.logicalId;
      expect(JSON.stringify(template.findResources('AWS::Lambda::Permission'))).not.toContain(ingestId);
    });

    it('put into the stream and onto the rule error queue through a role IoT can assume', () => {
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
            Match.objectLike({ Action: Match.arrayWith(['kinesis:PutRecord', 'kinesis:PutRecords']), Effect: 'Allow' }),
            Match.objectLike({ Action: Match.arrayWith(['sqs:SendMessage']), Effect: 'Allow' }),
          ]),
        }),
      });
    });
  });

  describe('ingest consumer', () => {
    it('is one arm64 function outside the VPC, with the event log table and the IoT data endpoint', () => {
      const functions = functionsByHandler(template);
      // Besides the pre-provisioning hook (provisioning.test.ts), certificate rotation and the certificate retirer
      // (certificate-rotation.test.ts), and the deployments' functions (deployments.test.ts).
      expect([...functions.keys()].sort()).toEqual([
        'artifact-urls',
        'certificate-rotation',
        'deployment-orchestrator',
        'job-events',
        'pre-provisioning-hook',
        'robot-ingest',
        'stream-certificate-retirer',
      ]);
      const fn = functions.get('robot-ingest')!;
      expect(fn.properties.Architectures).toEqual(['arm64']);
      expect(fn.properties.VpcConfig).toBeUndefined();
      expect(fn.properties.Environment.Variables.EVENT_LOG_TABLE).toBeDefined();
      expect(fn.properties.Environment.Variables.IOT_DATA_ENDPOINT).toBeDefined();
      expect(fn.properties.TracingConfig).toEqual({ Mode: 'Active' });
    });

    it('reads the stream one batch per robot at a time, bisecting, reporting item failures, retrying until records expire', () => {
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        StartingPosition: 'TRIM_HORIZON',
        BisectBatchOnFunctionError: true,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        MaximumRetryAttempts: -1,
        ParallelizationFactor: 10,
        DestinationConfig: { OnFailure: { Destination: Match.anyValue() } },
      });
      // The ingest function's one mapping (the certificate retirer's, on the event log stream, is its own test's).
      const ingest = functionsByHandler(template).get('robot-ingest')!.logicalId;
      const mappings = template.findResources('AWS::Lambda::EventSourceMapping', { Properties: { FunctionName: { Ref: ingest } } });
      const only = Object.values(mappings)[0] as { Properties: Record<string, unknown> };
      expect(Object.keys(mappings)).toHaveLength(1);
      expect(only.Properties.MaximumRecordAgeInSeconds).toBeUndefined();
    });

    it('alarms when robot messages wait in the stream for minutes', () => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'IteratorAge',
        Namespace: 'AWS/Lambda',
        Threshold: 300_000,
        ComparisonOperator: 'GreaterThanThreshold',
      });
    });

    it('may publish only acknowledgements to robots', () => {
      const policies = JSON.stringify(template.findResources('AWS::IAM::Policy'));
      expect(policies).toContain('topic/cmd/heartbeat/*/ack');
      expect(policies).not.toContain('report-now');
    });
  });
});
