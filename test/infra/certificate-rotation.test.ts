import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addIotStack, addStatefulStack } from '../../infra/heartbeat.js';
import type { IotStack } from '../../infra/stacks/iot-stack.js';
import { ROTATION_RULE, rotationTopics } from '../../schemas/rotation.js';
import { isAllowed, thingPolicy } from '../../schemas/thing-policy.js';
import { topicRuleName } from '../../schemas/topics.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

type Statement = { Action: string | string[]; Resource: unknown };

/** Certificate rotation in the IoT stack (issue 11, item 4): the rule, the function and its least-privilege role. */
describe('certificate rotation (issue 11, item 4)', () => {
  let iot: IotStack;
  let template: Template;
  let statements: Statement[];

  beforeAll(() => {
    const app = newApp();
    const stateful = addStatefulStack(app, STAGE);
    iot = addIotStack(app, STAGE, stateful);
    template = Template.fromStack(iot);
    const fn = functionsByHandler(template).get('certificate-rotation')!;
    const role = fn.properties.Role['Fn::GetAtt'][0] as string;
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: role }] } });
    statements = Object.values(policies).flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
  }, BUILD_TIMEOUT);

  const resourcesOf = (action: string) =>
    statements
      .filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).includes(action))
      .flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).map(flatten));

  it('routes dt/heartbeat/+/certificate/+ to the certificate-rotation function, named per stage', () => {
    const fn = functionsByHandler(template).get('certificate-rotation');
    expect(fn, 'no function runs functions/handlers/certificate-rotation.ts').toBeDefined();
    expect(fn!.properties.VpcConfig).toBeUndefined();
    expect(fn!.properties.Environment.Variables.EVENT_LOG_TABLE).toBeDefined();
    expect(fn!.properties.Environment.Variables.IOT_DATA_ENDPOINT).toBeDefined();
    const rules = Object.values(template.findResources('AWS::IoT::TopicRule')).filter(
      (rule) => rule.Properties.RuleName === topicRuleName(ROTATION_RULE, STAGE.stage),
    );
    expect(rules).toHaveLength(1);
    const payload = rules[0]!.Properties.TopicRulePayload;
    expect(payload.Sql).toBe(ROTATION_RULE.sql);
    expect(payload.Actions).toHaveLength(1);
    expect(flatten(payload.Actions[0].Lambda.FunctionArn)).toContain(fn!.logicalId);
    // Only IoT, for this rule, in this account, may invoke it.
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Principal: 'iot.amazonaws.com',
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [fn!.logicalId, 'Arn'] },
      SourceAccount: { Ref: 'AWS::AccountId' },
    });
  });

  it('grants exactly the IoT calls of rotation, scoped to robot things and certificates', () => {
    const iotActions = [...new Set(statements.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])).filter((a) => a.startsWith('iot:')))].sort();
    expect(iotActions).toEqual([
      'iot:AttachThingPrincipal',
      'iot:CreateCertificateFromCsr',
      'iot:DescribeCertificate',
      'iot:DetachThingPrincipal',
      'iot:ListPrincipalThings',
      'iot:Publish',
      'iot:UpdateCertificate',
    ]);
    const prefix = 'arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:';
    expect(resourcesOf('iot:AttachThingPrincipal').sort()).toEqual([`${prefix}thing/lekiwi-*`, `${prefix}thing/xle-*`]);
    expect(resourcesOf('iot:DetachThingPrincipal').sort()).toEqual([`${prefix}thing/lekiwi-*`, `${prefix}thing/xle-*`]);
    expect(resourcesOf('iot:UpdateCertificate')).toEqual([`${prefix}cert/*`]);
    expect(resourcesOf('iot:Publish').sort()).toEqual([`${prefix}topic/cmd/heartbeat/*/certificate-issued`, `${prefix}topic/cmd/heartbeat/*/certificate-rotated`]);
    // Never anything that deletes or revokes wholesale.
    expect(JSON.stringify(statements)).not.toMatch(/iot:\*|DeleteCertificate|iot:UpdateCertificates/);
  });

  it("the thing policy lets a robot publish its rotation messages, only under its own name", () => {
    const policy = thingPolicy(topicRuleName({ name: 'heartbeat_telemetry' }, STAGE.stage));
    for (const topic of [rotationTopics.request('lekiwi-LK0001'), rotationTopics.confirm('lekiwi-LK0001')]) {
      expect(isAllowed('Publish', 'lekiwi-LK0001', topic, policy)).toBe(true);
      expect(isAllowed('Publish', 'lekiwi-LK0002', topic, policy)).toBe(false);
    }
    expect(isAllowed('Receive', 'lekiwi-LK0001', 'cmd/heartbeat/lekiwi-LK0001/certificate-issued', policy)).toBe(true);
    expect(isAllowed('Receive', 'lekiwi-LK0002', 'cmd/heartbeat/lekiwi-LK0001/certificate-issued', policy)).toBe(false);
  });
});
