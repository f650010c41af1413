import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CfnElement } from 'aws-cdk-lib';
import { beforeAll, describe, expect, it } from 'vitest';
import { addIotStack, addStatefulStack } from '../../infra/heartbeat.js';
import type { IotStack } from '../../infra/stacks/iot-stack.js';
import { PRE_PROVISIONING_HOOK_SLOW_MS, thingGroupName, thingTypeName } from '../../infra/stacks/iot-stack.js';
import type { StatefulStack } from '../../infra/stacks/stateful-stack.js';
import {
  claimClientId,
  claimPolicy,
  PROVISIONING_PARAMETERS,
  provisioningTemplateName,
  provisioningTopics,
} from '../../schemas/provisioning.js';
import { ROBOT_MODELS } from '../../schemas/robot-id.js';
import { FACTORY_TABLE } from '../../schemas/tables.js';
import { isAllowed } from '../../schemas/thing-policy.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

type Resource = { Type: string; Properties: Record<string, any>; DependsOn?: string[]; DeletionPolicy?: string; UpdateReplacePolicy?: string };
type Statement = { Sid?: string; Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

const TEMPLATE_NAME = `heartbeat-${STAGE.stage}-claim`;
const CSR_TOPIC = '$aws/certificates/create-from-csr/json';
const REGISTER_TOPIC = `$aws/provisioning-templates/${TEMPLATE_NAME}/provision/json`;
const REPLIES = [`${CSR_TOPIC}/accepted`, `${CSR_TOPIC}/rejected`, `${REGISTER_TOPIC}/accepted`, `${REGISTER_TOPIC}/rejected`];

describe('fleet provisioning (issue 11)', () => {
  let stateful: StatefulStack;
  let iot: IotStack;
  let statefulJson: { Resources: Record<string, Resource>; Outputs: Record<string, any> };
  let iotJson: { Resources: Record<string, Resource>; Outputs: Record<string, any> };
  const logicalId = (stack: Stack, element: unknown) => stack.getLogicalId(element as CfnElement);
  const iotResources = (type: string) => Object.entries(iotJson.Resources).filter(([, r]) => r.Type === type);

  /** What an `Fn::ImportValue` in the IoT stack stands for in the stateful stack (`{ Ref: id }` or a GetAtt). */
  const imported = (value: unknown): unknown => {
    const name = flatten((value as Record<string, unknown>)['Fn::ImportValue']);
    const output = Object.values(statefulJson.Outputs).find((o) => o.Export?.Name === name);
    expect(output, `no export ${name}`).toBeDefined();
    return output.Value;
  };

  beforeAll(() => {
    const app = newApp();
    stateful = addStatefulStack(app, STAGE);
    iot = addIotStack(app, STAGE, stateful);
    statefulJson = Template.fromStack(stateful).toJSON() as typeof statefulJson;
    iotJson = Template.fromStack(iot).toJSON() as typeof iotJson;
  }, BUILD_TIMEOUT);

  describe('the factory table', () => {
    it('has the keys of FACTORY_TABLE, on demand, with point-in-time recovery and deletion protection, retained', () => {
      const id = logicalId(stateful, stateful.factory.node.defaultChild);
      const table = statefulJson.Resources[id]!;
      expect(table.Type).toBe('AWS::DynamoDB::Table');
      expect(table.Properties.KeySchema).toEqual([
        { AttributeName: FACTORY_TABLE.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: FACTORY_TABLE.sortKey.name, KeyType: 'RANGE' },
      ]);
      expect(table.Properties.AttributeDefinitions).toEqual([
        { AttributeName: FACTORY_TABLE.partitionKey.name, AttributeType: FACTORY_TABLE.partitionKey.type },
        { AttributeName: FACTORY_TABLE.sortKey.name, AttributeType: FACTORY_TABLE.sortKey.type },
      ]);
      expect(table.Properties.BillingMode).toBe('PAY_PER_REQUEST');
      expect(table.Properties.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
      expect(table.Properties.DeletionProtectionEnabled).toBe(true);
      expect(table.DeletionPolicy).toBe('Retain');
      expect(table.UpdateReplacePolicy).toBe('Retain');
      // No fixed name: CloudFormation names it, so stages never collide.
      expect(table.Properties.TableName).toBeUndefined();
      expect(statefulJson.Outputs.FactoryTableName?.Value).toEqual({ Ref: id });
    });
  });

  describe('the pre-provisioning hook', () => {
    const hookFunction = () => {
      const fn = functionsByHandler(Template.fromStack(iot)).get('pre-provisioning-hook');
      expect(fn, 'no function runs functions/handlers/pre-provisioning-hook.ts').toBeDefined();
      return fn!;
    };

    it('runs the hook handler with the factory table and the event log, within IoT’s 5 s', () => {
      const { properties } = hookFunction();
      const factoryId = logicalId(stateful, stateful.factory.node.defaultChild);
      const eventLogId = logicalId(stateful, stateful.eventLog.node.defaultChild);
      expect(imported(properties.Environment.Variables.FACTORY_TABLE)).toEqual({ Ref: factoryId });
      expect(imported(properties.Environment.Variables.EVENT_LOG_TABLE)).toEqual({ Ref: eventLogId });
      expect(properties.Timeout).toBeLessThanOrEqual(5);
      expect(properties.VpcConfig).toBeUndefined();
    });

    it('may only read and update items of the factory table and read items of the event log', () => {
      const { properties } = hookFunction();
      const roleId = (properties.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0];
      const statements = iotResources('AWS::IAM::Policy')
        .filter(([, p]) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
        .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Statement[]);
      const factoryId = logicalId(stateful, stateful.factory.node.defaultChild);
      const eventLogId = logicalId(stateful, stateful.eventLog.node.defaultChild);
      const byTable = new Map<string, Set<string>>();
      for (const statement of statements) {
        expect(statement.Effect).toBe('Allow');
        const actions = [statement.Action].flat();
        const dynamo = actions.filter((action) => action.startsWith('dynamodb:'));
        if (dynamo.length === 0) {
          // Only active tracing's X-Ray writes are left.
          expect(actions.every((action) => action.startsWith('xray:'))).toBe(true);
          continue;
        }
        expect(dynamo).toEqual(actions);
        for (const resource of [statement.Resource].flat()) {
          if (JSON.stringify(resource) === JSON.stringify({ Ref: 'AWS::NoValue' })) continue;
          const target = imported(resource) as { 'Fn::GetAtt': [string, string] };
          expect(target['Fn::GetAtt'][1]).toBe('Arn');
          const table = target['Fn::GetAtt'][0];
          byTable.set(table, new Set([...(byTable.get(table) ?? []), ...dynamo]));
        }
      }
      expect(Object.fromEntries([...byTable].map(([table, actions]) => [table, [...actions].sort()]))).toEqual({
        // Claims are transactions of Updates: IAM authorises each item action, there is no TransactWriteItems action.
        [factoryId]: ['dynamodb:BatchGetItem', 'dynamodb:ConditionCheckItem', 'dynamodb:UpdateItem'],
        // RobotProvisioned: the event log's append is a transaction of conditional Puts.
        [eventLogId]: ['dynamodb:BatchGetItem', 'dynamodb:GetItem', 'dynamodb:PutItem'],
      });
    });

    it('alarms when it fails (IoT then refuses a registered robot) and when its p99 nears IoT’s 5 s', () => {
      const { logicalId: fnId } = hookFunction();
      const alarms = iotResources('AWS::CloudWatch::Alarm')
        .map(([, alarm]) => alarm.Properties)
        .filter((alarm) => JSON.stringify(alarm.Dimensions) === JSON.stringify([{ Name: 'FunctionName', Value: { Ref: fnId } }]));
      expect(alarms.map((alarm) => alarm.MetricName).sort()).toEqual(['Duration', 'Errors']);
      expect(alarms.find((alarm) => alarm.MetricName === 'Errors')).toMatchObject({
        Statistic: 'Sum',
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
      });
      expect(alarms.find((alarm) => alarm.MetricName === 'Duration')).toMatchObject({
        ExtendedStatistic: 'p99',
        Threshold: PRE_PROVISIONING_HOOK_SLOW_MS,
        ComparisonOperator: 'GreaterThanThreshold',
      });
      expect(PRE_PROVISIONING_HOOK_SLOW_MS).toBeLessThan(5_000);
    });

    it('may be invoked by IoT only for this stage’s template in this account', () => {
      const { logicalId: fnId } = hookFunction();
      const permissions = iotResources('AWS::Lambda::Permission').filter(
        ([, permission]) => JSON.stringify(permission.Properties.FunctionName) === JSON.stringify({ 'Fn::GetAtt': [fnId, 'Arn'] }),
      );
      expect(permissions).toHaveLength(1);
      const [, permission] = permissions[0]!;
      expect(permission.Properties.FunctionName).toEqual({ 'Fn::GetAtt': [fnId, 'Arn'] });
      expect(permission.Properties.Action).toBe('lambda:InvokeFunction');
      expect(permission.Properties.Principal).toBe('iot.amazonaws.com');
      expect(permission.Properties.SourceAccount).toEqual({ Ref: 'AWS::AccountId' });
      expect(flatten(permission.Properties.SourceArn)).toBe(
        `arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:provisioningtemplate/${TEMPLATE_NAME}`,
      );
    });
  });

  describe('the provisioning template', () => {
    const template = () => {
      const templates = iotResources('AWS::IoT::ProvisioningTemplate');
      expect(templates).toHaveLength(1);
      return templates[0]!;
    };
    const body = () => JSON.parse(flatten(template()[1].Properties.TemplateBody)) as Record<string, any>;

    it('is named after the stage, enabled, and calls the hook first', () => {
      const [id, resource] = template();
      expect(provisioningTemplateName(STAGE.stage)).toBe(TEMPLATE_NAME);
      const fnId = functionsByHandler(Template.fromStack(iot)).get('pre-provisioning-hook')!.logicalId;
      expect(resource.Properties).toMatchObject({
        TemplateName: TEMPLATE_NAME,
        Enabled: true,
        TemplateType: 'FLEET_PROVISIONING',
        PreProvisioningHook: { TargetArn: { 'Fn::GetAtt': [fnId, 'Arn'] }, PayloadVersion: '2020-04-01' },
      });
      // IoT checks it may invoke the hook when the template is created: the permission comes first.
      const [permissionId] = iotResources('AWS::Lambda::Permission')[0]!;
      expect(resource.DependsOn).toEqual(expect.arrayContaining([permissionId]));
      expect(iotJson.Outputs.ProvisioningTemplateName?.Value).toEqual({ Ref: id });
    });

    it('provisions through a role only IoT assumes, with the AWS-managed things-registration policy', () => {
      const roleId = template()[1].Properties.ProvisioningRoleArn['Fn::GetAtt'][0];
      const role = iotJson.Resources[roleId]!;
      expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
        { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'iot.amazonaws.com' } },
      ]);
      expect(role.Properties.ManagedPolicyArns.map(flatten)).toEqual([
        'arn:<AWS::Partition>:iam::aws:policy/service-role/AWSIoTThingsRegistration',
      ]);
      expect(template()[1].DependsOn).toEqual(expect.arrayContaining([roleId]));
    });

    it('declares the robot’s parameters and the certificate id, nothing else', () => {
      expect(Object.keys(body().Parameters).sort()).toEqual(
        ['SerialNumber', 'Model', 'ThingName', 'Batch', 'AWS::IoT::Certificate::Id'].sort(),
      );
      expect(Object.values(PROVISIONING_PARAMETERS).sort()).toEqual(['Batch', 'Model', 'SerialNumber', 'ThingName']);
      for (const parameter of Object.values(body().Parameters)) expect(parameter).toEqual({ Type: 'String' });
    });

    it('registers the thing by ThingName, typed after its model, in the fleet group, with serial and batch', () => {
      const { thing } = body().Resources;
      expect(thing.Type).toBe('AWS::IoT::Thing');
      expect(thing.Properties.ThingName).toEqual({ Ref: 'ThingName' });
      expect(thing.Properties.AttributePayload).toEqual({ serial: { Ref: 'SerialNumber' }, batch: { Ref: 'Batch' } });
      // Every model maps to its own thing type of this stage (a Ref, so the types exist before the template).
      expect(thing.Properties.ThingTypeName).toEqual({ 'Fn::FindInMap': ['ThingTypes', { Ref: 'Model' }, 'ThingTypeName'] });
      const typeIds = Object.fromEntries(
        iotResources('AWS::IoT::ThingType').map(([id, r]) => [r.Properties.ThingTypeName as string, id]),
      );
      expect(body().Mappings.ThingTypes).toEqual(
        Object.fromEntries(ROBOT_MODELS.map((model) => [model, { ThingTypeName: `<${typeIds[thingTypeName(STAGE.stage, model)]}>` }])),
      );
      const [groupId] = iotResources('AWS::IoT::ThingGroup').find(([, r]) => r.Properties.ThingGroupName === thingGroupName(STAGE.stage))!;
      expect(thing.Properties.ThingGroups).toEqual([`<${groupId}>`]);
      // A re-image registers the same name again: the thing and its history stay.
      expect(thing.OverrideSettings).toEqual({ AttributePayload: 'MERGE', ThingTypeName: 'DO_NOTHING', ThingGroups: 'DO_NOTHING' });
    });

    it('activates the certificate made from the robot’s CSR and attaches the thing policy by name', () => {
      const { certificate, policy } = body().Resources;
      expect(certificate).toEqual({
        Type: 'AWS::IoT::Certificate',
        Properties: { CertificateId: { Ref: 'AWS::IoT::Certificate::Id' }, Status: 'ACTIVE' },
      });
      const thingPolicyId = logicalId(iot, iot.thingPolicy);
      expect(policy).toEqual({ Type: 'AWS::IoT::Policy', Properties: { PolicyName: `<${thingPolicyId}>` } });
      expect(Object.keys(body().Resources).sort()).toEqual(['certificate', 'policy', 'thing']);
    });
  });

  describe('the claim certificate policy', () => {
    const claimStatements = (): Statement[] => {
      const id = logicalId(iot, iot.claimPolicy);
      expect(iotJson.Outputs.ClaimPolicyName?.Value).toEqual({ Ref: id });
      expect(iotJson.Resources[id]!.Properties.PolicyName).toBeUndefined();
      return iotJson.Resources[id]!.Properties.PolicyDocument.Statement as Statement[];
    };
    /** `{ action: [resource names after `:<type>/`] }` over every statement. */
    const grants = (): Record<string, string[]> => {
      const out: Record<string, string[]> = {};
      const types: Record<string, string> = { 'iot:Connect': 'client', 'iot:Publish': 'topic', 'iot:Subscribe': 'topicfilter', 'iot:Receive': 'topic' };
      for (const statement of claimStatements()) {
        expect(statement.Effect).toBe('Allow');
        expect(statement.Condition).toBeUndefined();
        for (const action of [statement.Action].flat()) {
          for (const arn of [statement.Resource].flat().map(flatten)) {
            const prefix = `arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:${types[action]}/`;
            expect(arn.startsWith(prefix), `${action} on ${arn}`).toBe(true);
            (out[action] ??= []).push(arn.slice(prefix.length));
          }
        }
      }
      for (const names of Object.values(out)) names.sort();
      return out;
    };

    it('allows exactly the CSR and RegisterThing exchanges of this stage’s template, and connecting as a claim', () => {
      expect(grants()).toEqual({
        'iot:Connect': ['claim-*'],
        'iot:Publish': [CSR_TOPIC, REGISTER_TOPIC].sort(),
        'iot:Subscribe': [...REPLIES].sort(),
        'iot:Receive': [...REPLIES].sort(),
      });
    });

    it('is built from the topics schemas/provisioning.ts defines once', () => {
      const topics = provisioningTopics(TEMPLATE_NAME);
      expect(topics.createCertificateFromCsr).toEqual({ request: CSR_TOPIC, accepted: REPLIES[0], rejected: REPLIES[1] });
      expect(topics.registerThing).toEqual({ request: REGISTER_TOPIC, accepted: REPLIES[2], rejected: REPLIES[3] });
    });
  });
});

describe('provisioning names and the claim policy as data (schemas/provisioning.ts)', () => {
  it('names the template after the stage within IoT’s 36 characters, and refuses what is no stage', () => {
    expect(provisioningTemplateName()).toBe('heartbeat-claim');
    expect(provisioningTemplateName('prod')).toBe('heartbeat-prod-claim');
    expect(provisioningTemplateName('a'.repeat(20))).toHaveLength(36);
    expect(() => provisioningTemplateName('Prod')).toThrow(/not a stage name/);
    expect(() => provisioningTopics('no/slashes')).toThrow(/template name "no\/slashes"/);
  });

  it('gives a claim connection a client id that can never be a robot’s thing name', () => {
    expect(claimClientId('LK0001')).toBe('claim-LK0001');
    expect(() => claimClientId('bad serial')).toThrow();
    for (const model of ROBOT_MODELS) expect(claimClientId('LK0001').startsWith(`${model}-`)).toBe(false);
  });

  it('lets a claim connection do the provisioning exchanges and nothing a robot does (as the local broker would check)', () => {
    const policy = claimPolicy('heartbeat-claim');
    const client = claimClientId('LK0001');
    expect(isAllowed('Connect', client, client, policy)).toBe(true);
    expect(isAllowed('Connect', client, 'lekiwi-LK0001', policy)).toBe(false);
    expect(isAllowed('Publish', client, '$aws/certificates/create-from-csr/json', policy)).toBe(true);
    expect(isAllowed('Publish', client, '$aws/provisioning-templates/heartbeat-claim/provision/json', policy)).toBe(true);
    expect(isAllowed('Subscribe', client, '$aws/provisioning-templates/heartbeat-claim/provision/json/accepted', policy)).toBe(true);
    // Not another template, not AWS-made keys, no telemetry, no commands, no wildcard subscriptions.
    expect(isAllowed('Publish', client, '$aws/provisioning-templates/other/provision/json', policy)).toBe(false);
    expect(isAllowed('Publish', client, '$aws/certificates/create/json', policy)).toBe(false);
    expect(isAllowed('Publish', client, 'dt/heartbeat/lekiwi-LK0001/telemetry', policy)).toBe(false);
    expect(isAllowed('Subscribe', client, 'cmd/heartbeat/lekiwi-LK0001/#', policy)).toBe(false);
    expect(isAllowed('Subscribe', client, '$aws/certificates/create-from-csr/json/#', policy)).toBe(false);
    expect(isAllowed('Subscribe', client, '#', policy)).toBe(false);
  });
});
