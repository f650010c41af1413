import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addApiStack, addStatefulStack } from '../../infra/heartbeat.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

/** Issue 9, item 1: the teleoperation offline timeout runs every minute, on the read model and the event log. */
describe('ApiStack: TeleoperationExpiry', () => {
  let template: Template;
  let fn: { logicalId: string; properties: Record<string, any> };

  beforeAll(() => {
    const app = newApp();
    template = Template.fromStack(addApiStack(app, STAGE, addStatefulStack(app, STAGE)));
    const found = functionsByHandler(template).get('teleoperation-expiry');
    if (!found) throw new Error('no teleoperation-expiry function');
    fn = found;
  }, BUILD_TIMEOUT);

  it('is scheduled every minute, without retries (the next run makes up for a failed one)', () => {
    const rules = Object.values(template.findResources('AWS::Events::Rule')).filter((rule) =>
      (rule.Properties?.Targets ?? []).some((target: { Arn: unknown }) => flatten(target.Arn).includes(fn.logicalId)),
    );
    expect(rules).toHaveLength(1);
    expect(rules[0]!.Properties).toMatchObject({ ScheduleExpression: 'rate(1 minute)', State: 'ENABLED' });
    expect(rules[0]!.Properties.Targets[0].RetryPolicy).toMatchObject({ MaximumRetryAttempts: 0 });
  });

  it('reaches the read models through RDS Proxy in the VPC and the event log by name', () => {
    expect(fn.properties.VpcConfig).toBeDefined();
    expect(fn.properties.Environment.Variables).toMatchObject({ DB_IAM_AUTH: 'true', EVENT_LOG_TABLE: expect.anything() });
    // The timeout is the function's default (120 s) unless the stack is given one.
    expect(fn.properties.Environment.Variables.TELEOPERATION_OFFLINE_TIMEOUT_SECONDS).toBeUndefined();
    const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
      (policy.Properties?.Roles ?? []).some((role: unknown) => flatten(role).includes(fn.properties.Role?.['Fn::GetAtt']?.[0] ?? '?')),
    );
    const actions = policies.flatMap((policy) => policy.Properties.PolicyDocument.Statement.flatMap((s: { Action: string | string[] }) => [s.Action].flat()));
    // An append is a TransactWriteItems, authorized per item as PutItem and ConditionCheckItem.
    expect(actions).toEqual(expect.arrayContaining(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:ConditionCheckItem', 'rds-db:connect']));
  });
});
