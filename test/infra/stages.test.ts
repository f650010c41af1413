import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildHeartbeat, type HeartbeatStacks } from '../../infra/heartbeat.js';
import { TOPIC_RULES } from '../../schemas/topics.js';
import { BUILD_TIMEOUT, flatten, newApp } from './helpers.js';
import { ROTATION_RULE } from '../../schemas/rotation.js';
import { ARTIFACT_RULE, JOB_EVENTS_RULE } from '../../schemas/deployments.js';

/** Two stages deployed side by side: one account, one region. */
const ENV = { account: '123456789012', region: 'eu-west-1' };

type Resources = Record<string, { Type: string; Properties?: Record<string, unknown> }>;

/**
 * Names that only have to be unique inside their parent resource (a group or client inside its own user pool, a stage
 * inside its own API, a database inside its own cluster, an inline policy inside its own role, a proxy's target
 * group), or that are not names of ours at all (the AWS service an endpoint connects to, a metric).
 */
const SCOPED = new Set([
  'AWS::Cognito::UserPoolGroup.GroupName',
  'AWS::Cognito::UserPoolClient.ClientName',
  'AWS::ApiGatewayV2::Stage.StageName',
  'AWS::RDS::DBCluster.DatabaseName',
  'AWS::RDS::DBProxyTargetGroup.TargetGroupName',
  'AWS::IAM::Policy.PolicyName',
  'AWS::EC2::VPCEndpoint.ServiceName',
  'AWS::CloudWatch::Alarm.MetricName',
  'AWS::ApiGatewayV2::Authorizer.Name',
  // A record inside its own hosted zone; private zones of the same name coexist, one per VPC (each stage has its own).
  'AWS::Route53::RecordSet.Name',
  'AWS::Route53::HostedZone.Name',
  // An AWS-owned default parameter group the cluster uses, not one we create.
  'AWS::RDS::DBCluster.DBClusterParameterGroupName',
]);

/** Pseudo parameters that are the same for every stack of the account and region (AWS::StackName is not). */
const SHARED_PSEUDO = /<AWS::(Region|AccountId|Partition|URLSuffix)>/g;

/**
 * Every physical name of every resource of the stage: top-level properties named `…Name` or `…Identifier` whose value
 * is a literal (after Fn::Join, with only account-wide pseudo parameters in it). References to resources of the same
 * stage (Ref, GetAtt, imports) are that stage's own and are left out.
 */
function physicalNames(stacks: HeartbeatStacks): Map<string, string> {
  const out = new Map<string, string>();
  for (const stack of [stacks.stateful, stacks.api, stacks.iot]) {
    const resources = Template.fromStack(stack).toJSON().Resources as Resources;
    for (const [logicalId, resource] of Object.entries(resources)) {
      for (const [key, value] of Object.entries(resource.Properties ?? {})) {
        if (!/(Name|Identifier)$/.test(key) || SCOPED.has(`${resource.Type}.${key}`)) continue;
        const text = flatten(value);
        if (/<[^>]+>/.test(text.replace(SHARED_PSEUDO, ''))) continue;
        out.set(text, `${stack.stackName}/${logicalId} ${resource.Type}.${key}`);
      }
    }
  }
  return out;
}

describe('two stages in one account and region', () => {
  let dev: HeartbeatStacks;
  let prod: HeartbeatStacks;

  beforeAll(() => {
    dev = buildHeartbeat(newApp(), { stage: 'dev', env: ENV });
    prod = buildHeartbeat(newApp(), { stage: 'prod', env: ENV });
  }, BUILD_TIMEOUT);

  it('share no physical name (RDS proxy, thing types and group, topic rules, tables, queues, functions, log groups...)', () => {
    const devNames = physicalNames(dev);
    const prodNames = physicalNames(prod);
    // The check itself sees names: the stage-derived ones (cluster, log group, API names) are literals.
    expect(devNames.size).toBeGreaterThan(0);
    const common = [...devNames.keys()].filter((name) => prodNames.has(name)).map((name) => `${name} (${devNames.get(name)})`);
    expect(common).toEqual([]);
  });

  it("keep API Gateway's account-wide CloudWatch role setting valid when one stage is deleted", () => {
    // Each stage sets the one per-account setting to its own role; the last deployed wins. Deleting that stage
    // must leave both the setting and the role it names.
    const resources = Template.fromStack(dev.api).toJSON().Resources as Record<string, any>;
    const [account] = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Account');
    expect(account.DeletionPolicy).toBe('Retain');
    const roleId = account.Properties.CloudWatchRoleArn['Fn::GetAtt'][0];
    expect(resources[roleId].DeletionPolicy).toBe('Retain');
  });

  it('give every stack a stage-specific name', () => {
    const names = (stacks: HeartbeatStacks) => [stacks.stateful, stacks.api, stacks.iot].map((stack) => stack.stackName);
    expect(names(dev).filter((name) => names(prod).includes(name))).toEqual([]);
  });
});

describe('alarms', () => {
  let stacks: HeartbeatStacks;

  beforeAll(() => {
    stacks = buildHeartbeat(newApp(), { stage: 'dev', env: ENV });
  }, BUILD_TIMEOUT);

  it('every alarm of every stack notifies the stage alarm topic, and only it', () => {
    const stateful = Template.fromStack(stacks.stateful).toJSON().Resources as Resources;
    const [topicId] = Object.entries(stateful).find(([, r]) => r.Type === 'AWS::SNS::Topic')!;
    const topicExport = Object.entries(Template.fromStack(stacks.stateful).toJSON().Outputs as Record<string, any>)
      .filter(([, output]) => JSON.stringify(output.Value) === JSON.stringify({ Ref: topicId }) && output.Export)
      .map(([, output]) => output.Export.Name as string);
    const alarms: Array<[string, Record<string, unknown>]> = [];
    for (const stack of [stacks.stateful, stacks.api, stacks.iot]) {
      for (const [id, r] of Object.entries(Template.fromStack(stack).toJSON().Resources as Resources)) {
        if (r.Type === 'AWS::CloudWatch::Alarm') alarms.push([`${stack.stackName}/${id}`, r.Properties ?? {}]);
      }
    }
    // The four dead-letter queues, the projector's iterator age and set-aside records, the ingest iterator age.
    expect(alarms.length).toBeGreaterThanOrEqual(7);
    for (const [id, properties] of alarms) {
      const actions = (properties.AlarmActions ?? []) as unknown[];
      expect(actions, id).toHaveLength(1);
      const action = actions[0] as Record<string, unknown>;
      if (id.startsWith(stacks.stateful.stackName)) expect(action, id).toEqual({ Ref: topicId });
      else expect(topicExport, id).toContain(flatten((action['Fn::ImportValue'] as unknown) ?? action));
    }
  });

  it('the topic is encrypted with a rotating key CloudWatch may use, and refuses plain HTTP', () => {
    const template = Template.fromStack(stacks.stateful);
    const resources = template.toJSON().Resources as Resources;
    const [, topic] = Object.entries(resources).find(([, r]) => r.Type === 'AWS::SNS::Topic')!;
    const keyId = (topic.Properties?.KmsMasterKeyId as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0]!;
    expect(resources[keyId]?.Type).toBe('AWS::KMS::Key');
    expect(resources[keyId]?.Properties?.EnableKeyRotation).toBe(true);
    const keyStatements = (resources[keyId]?.Properties?.KeyPolicy as { Statement: any[] }).Statement;
    expect(keyStatements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] }),
      ]),
    );
    const topicPolicy = Object.values(resources).find((r) => r.Type === 'AWS::SNS::TopicPolicy')!;
    expect(JSON.stringify(topicPolicy.Properties)).toContain('"aws:SecureTransport":"false"');
  });

  it('subscribes the AlarmEmail parameter by e-mail only when it is not empty', () => {
    const json = Template.fromStack(stacks.stateful).toJSON();
    expect(json.Parameters.AlarmEmail).toMatchObject({ Type: 'String', Default: '' });
    const pattern = new RegExp(json.Parameters.AlarmEmail.AllowedPattern as string);
    expect(pattern.test('')).toBe(true);
    expect(pattern.test('ops@example.com')).toBe(true);
    expect(pattern.test('not an address')).toBe(false);
    const subscriptions = Object.values(json.Resources as Resources).filter((r) => r.Type === 'AWS::SNS::Subscription') as any[];
    expect(subscriptions).toHaveLength(1);
    const [subscription] = subscriptions;
    expect(subscription.Properties).toMatchObject({ Protocol: 'email', Endpoint: { Ref: 'AlarmEmail' } });
    expect(json.Conditions[subscription.Condition]).toEqual({
      'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'AlarmEmail' }, ''] }],
    });
  });
});

describe('IoT topic rules of a stage', () => {
  it('are named after the stage, and created after the role they act with and its policy', () => {
    const stacks = buildHeartbeat(newApp(), { stage: 'staging-eu', env: ENV });
    const resources = Template.fromStack(stacks.iot).toJSON().Resources as Record<string, any>;
    const rules = Object.values(resources).filter((r) => r.Type === 'AWS::IoT::TopicRule');
    expect(rules.map((r) => r.Properties.RuleName).sort()).toEqual(
      [...Object.values(TOPIC_RULES), ROTATION_RULE, ARTIFACT_RULE, JOB_EVENTS_RULE].map((rule) => `${rule.name}_staging_eu`).sort(),
    );
    for (const rule of rules) {
      const roleId = rule.Properties.TopicRulePayload.ErrorAction.Sqs.RoleArn['Fn::GetAtt'][0];
      const policyIds = Object.entries(resources)
        .filter(([, r]) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
        .map(([id]) => id);
      expect(policyIds).toHaveLength(1);
      expect(rule.DependsOn).toEqual(expect.arrayContaining([roleId, policyIds[0]]));
    }
  });
});

describe('the iot.data interface endpoint', () => {
  /** A region whose first two zones host the VPC, and iot.data offered in only one of them. */
  const contextFor = (env: typeof ENV): Record<string, unknown> => ({
    [`availability-zones:account=${env.account}:region=${env.region}`]: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
    [`endpoint-service-availability-zones:account=${env.account}:region=${env.region}:serviceName=com.amazonaws.${env.region}.iot.data`]: [
      'eu-west-1b',
      'eu-west-1c',
    ],
  });

  it('sits only in subnets of zones that offer the service', () => {
    const app = newApp();
    for (const [key, value] of Object.entries(contextFor(ENV))) app.node.setContext(key, value);
    const stacks = buildHeartbeat(app, { stage: 'dev', env: ENV });
    const stateful = Template.fromStack(stacks.stateful).toJSON();
    const azOfSubnet = new Map(
      Object.entries(stateful.Resources as Record<string, any>)
        .filter(([, r]) => r.Type === 'AWS::EC2::Subnet')
        .map(([id, r]) => [id, r.Properties.AvailabilityZone as string]),
    );
    expect([...new Set(azOfSubnet.values())].sort()).toEqual(['eu-west-1a', 'eu-west-1b']);
    const api = Template.fromStack(stacks.api).toJSON();
    const endpoint = Object.values(api.Resources as Record<string, any>).find(
      (r) => r.Type === 'AWS::EC2::VPCEndpoint' && flatten(r.Properties.ServiceName).endsWith('.iot.data'),
    );
    const subnetAzs = (endpoint.Properties.SubnetIds as unknown[]).map((ref) => {
      // Imported from the stateful stack: the export's value names the subnet.
      const exportName = flatten((ref as Record<string, unknown>)['Fn::ImportValue']);
      const output = Object.values(stateful.Outputs as Record<string, any>).find((o) => o.Export?.Name === exportName);
      return azOfSubnet.get(output.Value.Ref);
    });
    expect(subnetAzs).toEqual(['eu-west-1b']);
  });
});

describe('stage names', () => {
  it.each(['Prod', 'dev_1', '-dev', 'dev-', 'a--b', 'x'.repeat(21), ''])('refuses %j, naming the problem', (stage) => {
    expect(() => buildHeartbeat(newApp(), { stage })).toThrow(/stage .* cannot name resources/);
  });
});
