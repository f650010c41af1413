import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildHeartbeat, type HeartbeatStacks } from '../../infra/heartbeat.js';
import { DEPLOYMENT_HEAD_RECORD_PATTERNS, DEPLOYMENT_UPDATE_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { UPDATE_EVENT_TYPES } from '../../functions/app/deployments/on-robot-update.js';
import { ARTIFACT_COMMANDS, ARTIFACT_COMMAND_TOPICS, ARTIFACT_RULE, artifactTopics, JOB_EVENTS_RULE } from '../../schemas/deployments.js';
import { isAllowed, thingPolicy } from '../../schemas/thing-policy.js';
import { createTableKeys, DEPLOYMENTS_TABLE } from '../../schemas/tables.js';
import { TOPIC_RULES, topicRuleName } from '../../schemas/topics.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

/** Deployments in AWS (issue 12, item 5): the artifact bucket, the deployments table, the rules, the functions, their grants. */
describe('deployments (issue 12)', () => {
  let stacks: HeartbeatStacks;
  let stateful: Template;
  let iot: Template;
  let api: Template;
  /** Logical ids in the stateful stack, as the other stacks' imports name them. */
  let ids: { bucket: string; logs: string; deployments: string; eventLog: string; orchestratorDlq: string; ruleErrorDlq: string };

  beforeAll(() => {
    stacks = buildHeartbeat(newApp(), STAGE);
    stateful = Template.fromStack(stacks.stateful);
    iot = Template.fromStack(stacks.iot);
    api = Template.fromStack(stacks.api);
    const s = stacks.stateful;
    const id = (construct: { node: { defaultChild?: unknown } }) => s.getLogicalId(construct.node.defaultChild as never);
    ids = {
      bucket: id(s.artifactBucket),
      logs: Object.keys(stateful.findResources('AWS::S3::Bucket')).find((key) => key.includes('AccessLogs'))!,
      deployments: id(s.deployments),
      eventLog: id(s.eventLog),
      orchestratorDlq: id(s.orchestratorDlq),
      ruleErrorDlq: id(s.iotRuleErrorDlq),
    };
  }, BUILD_TIMEOUT);

  /** A function's statements without the baseline every function has (tracing) or is given by its event source. */
  const statementsOf = (template: Template, handler: string): Statement[] => {
    const fn = functionsByHandler(template).get(handler);
    if (!fn) throw new Error(`no function runs functions/handlers/${handler}.ts`);
    const role = fn.properties.Role['Fn::GetAtt'][0] as string;
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: role }] } });
    return Object.values(policies)
      .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[])
      .filter((s) => !JSON.stringify(s.Action).includes('xray:'));
  };
  /** `{action: [resources]}`, actions and resources flattened to readable strings, sorted. */
  const grants = (statements: Statement[]): Record<string, string[]> => {
    const out: Record<string, string[]> = {};
    for (const s of statements) {
      expect(s.Effect).toBe('Allow');
      expect(s.Condition).toBeUndefined();
      const resources = (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).map(flatten);
      for (const action of Array.isArray(s.Action) ? s.Action : [s.Action]) out[action] = [...(out[action] ?? []), ...resources].sort();
    }
    return out;
  };
  const env = (template: Template, handler: string): Record<string, unknown> =>
    functionsByHandler(template).get(handler)!.properties.Environment.Variables;
  /** A value imported from the stateful stack, naming that stack's resource and attribute. */
  const imported = (logicalId: string, attribute: string) => expect.stringMatching(new RegExp(`^<import:.*${logicalId}${attribute}`));

  const where = '<AWS::Region>:<AWS::AccountId>';
  const thing = (model: string) => `arn:<AWS::Partition>:iot:${where}:thing/${model}-*`;
  const JOB = `arn:<AWS::Partition>:iot:${where}:job/dep-*`;
  const JOBS_CONTROL = ['iot:CancelJob', 'iot:CancelJobExecution', 'iot:CreateJob', 'iot:DescribeJob', 'iot:ListJobExecutionsForJob'];

  describe('the artifact bucket', () => {
    it('is private, TLS only, SSE-S3, versioned with noncurrent versions expiring, and kept when the stack goes', () => {
      const bucket = stateful.toJSON().Resources[ids.bucket];
      expect(bucket.DeletionPolicy).toBe('Retain');
      expect(bucket.UpdateReplacePolicy).toBe('Retain');
      const p = bucket.Properties;
      expect(p.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(p.BucketEncryption.ServerSideEncryptionConfiguration).toEqual([{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }]);
      expect(p.VersioningConfiguration).toEqual({ Status: 'Enabled' });
      expect(p.LifecycleConfiguration.Rules).toEqual(
        expect.arrayContaining([expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' })]),
      );
      expect(p.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
      stateful.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: ids.bucket },
        PolicyDocument: Match.objectLike({
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        }),
      });
    });

    it('logs access to a private log bucket of its own, also kept', () => {
      const bucket = stateful.toJSON().Resources[ids.bucket];
      expect(bucket.Properties.LoggingConfiguration).toEqual({ DestinationBucketName: { Ref: ids.logs }, LogFilePrefix: 'artifacts/' });
      const logs = stateful.toJSON().Resources[ids.logs];
      expect(logs.DeletionPolicy).toBe('Retain');
      expect(logs.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm).toBe('AES256');
      expect(logs.Properties.PublicAccessBlockConfiguration.BlockPublicPolicy).toBe(true);
    });

    it('is named in an output for `npm run release -- --bucket`, and reachable from the isolated subnets', () => {
      expect(flatten(stateful.toJSON().Outputs.ArtifactBucketName.Value)).toBe(`<${ids.bucket}>`);
      stateful.hasResourceProperties('AWS::EC2::VPCEndpoint', {
        VpcEndpointType: 'Gateway',
        ServiceName: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('\\.s3$')])] }),
      });
    });
  });

  describe('the deployments table', () => {
    it('has the keys of schemas/tables.ts, on demand, PITR, deletion protection, a NEW_IMAGE stream, retained', () => {
      const keys = createTableKeys(DEPLOYMENTS_TABLE);
      const table = stateful.toJSON().Resources[ids.deployments];
      expect(table.Properties.KeySchema).toEqual(keys.KeySchema);
      expect(table.Properties.AttributeDefinitions).toEqual(keys.AttributeDefinitions);
      expect(table.Properties.BillingMode).toBe('PAY_PER_REQUEST');
      expect(table.Properties.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
      expect(table.Properties.DeletionProtectionEnabled).toBe(true);
      // The live feed's DeploymentChanged (stream-deployment-changes), as local/tables.ts creates it.
      expect(table.Properties.StreamSpecification).toEqual({ StreamViewType: 'NEW_IMAGE' });
      // Encrypted like the event log: DynamoDB's default (an AWS owned key), no SSESpecification on either.
      expect(table.Properties.SSESpecification).toEqual(stateful.toJSON().Resources[ids.eventLog].Properties.SSESpecification);
      expect(table.DeletionPolicy).toBe('Retain');
    });

    it('has an on-failure queue for the orchestrator, alarmed like every dead-letter queue', () => {
      stateful.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [ids.orchestratorDlq, 'QueueName'] } }],
        Threshold: 0,
      });
    });
  });

  describe('the IoT rules', () => {
    const ruleFor = (rule: { name: string }) => {
      const found = Object.entries(iot.findResources('AWS::IoT::TopicRule')).find(
        ([, r]) => r.Properties.RuleName === topicRuleName(rule, STAGE.stage),
      );
      if (!found) throw new Error(`no rule ${rule.name}`);
      return { id: found[0], payload: found[1].Properties.TopicRulePayload as Record<string, any>, dependsOn: found[1].DependsOn as string[] };
    };

    it.each([
      ['artifact-urls', ARTIFACT_RULE],
      ['job-events', JOB_EVENTS_RULE],
    ] as const)('hand %s its messages with the SQL of schemas/deployments.ts, failures to the rule error queue', (handler, rule) => {
      const { id, payload, dependsOn } = ruleFor(rule);
      expect(payload.Sql).toBe(rule.sql);
      expect(payload.AwsIotSqlVersion).toBe('2016-03-23');
      expect(payload.RuleDisabled).toBe(false);
      const fnId = functionsByHandler(iot).get(handler)!.logicalId;
      expect(payload.Actions).toEqual([{ Lambda: { FunctionArn: { 'Fn::GetAtt': [fnId, 'Arn'] } } }]);
      expect(flatten(payload.ErrorAction.Sqs.QueueUrl)).toEqual(imported(ids.ruleErrorDlq, ''));
      // Created after the error action's role and its policy, like every rule.
      const roleId = payload.ErrorAction.Sqs.RoleArn['Fn::GetAtt'][0] as string;
      expect(dependsOn).toEqual(expect.arrayContaining([roleId]));
      // Only this rule, of this account, may invoke the function.
      iot.hasResourceProperties('AWS::Lambda::Permission', {
        FunctionName: { 'Fn::GetAtt': [fnId, 'Arn'] },
        Principal: 'iot.amazonaws.com',
        Action: 'lambda:InvokeFunction',
        SourceArn: { 'Fn::GetAtt': [id, 'Arn'] },
        SourceAccount: { Ref: 'AWS::AccountId' },
      });
    });

    it('read the robot’s request topic and IoT’s job execution events', () => {
      expect(ruleFor(ARTIFACT_RULE).payload.Sql).toContain("FROM 'dt/heartbeat/+/artifacts/request'");
      expect(ruleFor(JOB_EVENTS_RULE).payload.Sql).toContain("FROM '$aws/events/jobExecution/+/+'");
    });

    it('switch on the account’s job execution events (off by default), never off', () => {
      const [resource] = Object.values(iot.findResources('Custom::IotJobExecutionEvents'));
      expect(resource).toBeDefined();
      for (const phase of ['Create', 'Update']) {
        const call = JSON.parse(flatten(resource!.Properties[phase])) as Record<string, any>;
        expect(call.service).toBe('Iot');
        expect(call.action).toBe('updateEventConfigurations');
        expect(call.parameters).toEqual({ eventConfigurations: { JOB_EXECUTION: { Enabled: true } } });
      }
      expect(resource!.Properties.Delete).toBeUndefined();
    });
  });

  it('lets a robot ask for URLs and receive the reply only under its own name (schemas/thing-policy.ts)', () => {
    const policy = thingPolicy(topicRuleName(TOPIC_RULES.telemetry, STAGE.stage));
    const request = artifactTopics.request('lekiwi-LK0001');
    expect(isAllowed('Publish', 'lekiwi-LK0001', request, policy)).toBe(true);
    expect(isAllowed('Publish', 'lekiwi-LK0002', request, policy)).toBe(false);
    const reply = `cmd/heartbeat/lekiwi-LK0001/${ARTIFACT_COMMANDS.urls}`;
    expect(isAllowed('Subscribe', 'lekiwi-LK0001', reply, policy)).toBe(true);
    expect(isAllowed('Receive', 'lekiwi-LK0001', reply, policy)).toBe(true);
    expect(isAllowed('Receive', 'lekiwi-LK0002', reply, policy)).toBe(false);
  });

  describe('artifact-urls', () => {
    it('gets the bucket and the IoT data endpoint, outside the VPC', () => {
      const fn = functionsByHandler(iot).get('artifact-urls')!;
      expect(fn.properties.VpcConfig).toBeUndefined();
      expect(flatten(env(iot, 'artifact-urls').ARTIFACT_BUCKET)).toEqual(imported(ids.bucket, ''));
      expect(env(iot, 'artifact-urls').IOT_DATA_ENDPOINT).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/IotDataEndpoint/), 'endpointAddress'] });
    });

    it('may read objects and publish the reply topic, nothing else', () => {
      const g = grants(statementsOf(iot, 'artifact-urls'));
      expect(Object.keys(g).sort()).toEqual(['iot:Publish', 's3:GetObject', 's3:ListBucket']);
      expect(g['s3:GetObject']).toEqual([expect.stringMatching(new RegExp(`^<import:.*${ids.bucket}Arn.*>/objects/\\*$`))]);
      expect(g['s3:ListBucket']).toEqual([expect.stringMatching(new RegExp(`^<import:.*${ids.bucket}Arn.*>$`))]);
      expect(g['iot:Publish']).toEqual(ARTIFACT_COMMAND_TOPICS.map((topic) => `arn:<AWS::Partition>:iot:${where}:topic/${topic}`));
      expect(g['iot:Publish']).toEqual([`arn:<AWS::Partition>:iot:${where}:topic/cmd/heartbeat/*/artifact-urls`]);
    });
  });

  describe('job-events', () => {
    it('gets the event log and may only read a head and append (GetItem, PutItem)', () => {
      expect(flatten(env(iot, 'job-events').EVENT_LOG_TABLE)).toEqual(imported(ids.eventLog, ''));
      const g = grants(statementsOf(iot, 'job-events'));
      expect(Object.keys(g).sort()).toEqual(['dynamodb:GetItem', 'dynamodb:PutItem', 'sqs:SendMessage']);
      for (const action of ['dynamodb:GetItem', 'dynamodb:PutItem']) {
        expect(g[action]).toEqual([expect.stringMatching(new RegExp(`^<import:.*${ids.eventLog}Arn`))]);
      }
    });

    it('keeps the job events it failed on (after the asynchronous retries) on the rule error queue', () => {
      const fn = functionsByHandler(iot).get('job-events')!;
      expect(flatten(fn.properties.DeadLetterConfig.TargetArn)).toEqual(imported(ids.ruleErrorDlq, 'Arn'));
      expect(grants(statementsOf(iot, 'job-events'))['sqs:SendMessage']).toEqual([flatten(fn.properties.DeadLetterConfig.TargetArn)]);
    });
  });

  describe('deployment-orchestrator', () => {
    it('gets both tables, the bucket and the thing ARN prefix of IotJobsControl', () => {
      const e = env(iot, 'deployment-orchestrator');
      expect(flatten(e.DEPLOYMENTS_TABLE)).toEqual(imported(ids.deployments, ''));
      expect(flatten(e.EVENT_LOG_TABLE)).toEqual(imported(ids.eventLog, ''));
      expect(flatten(e.ARTIFACT_BUCKET)).toEqual(imported(ids.bucket, ''));
      expect(flatten(e.THING_ARN_PREFIX)).toBe(`arn:<AWS::Partition>:iot:${where}:thing/`);
      expect(functionsByHandler(iot).get('deployment-orchestrator')!.properties.VpcConfig).toBeUndefined();
    });

    it('consumes only the robots’ update events of the event log stream, in order, never skipping one', () => {
      const fnId = functionsByHandler(iot).get('deployment-orchestrator')!.logicalId;
      const mappings = Object.values(iot.findResources('AWS::Lambda::EventSourceMapping', { Properties: { FunctionName: { Ref: fnId } } }));
      expect(mappings).toHaveLength(1);
      const m = mappings[0]!.Properties;
      expect(flatten(m.EventSourceArn)).toEqual(imported(ids.eventLog, 'StreamArn'));
      expect(m).toMatchObject({
        StartingPosition: 'TRIM_HORIZON',
        BatchSize: 100,
        BisectBatchOnFunctionError: true,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        MaximumRetryAttempts: -1,
        ParallelizationFactor: 1,
      });
      expect(flatten(m.DestinationConfig.OnFailure.Destination)).toEqual(imported(ids.orchestratorDlq, 'Arn'));
      const patterns = (m.FilterCriteria.Filters as { Pattern: string }[]).map((f) => JSON.parse(f.Pattern));
      expect(patterns).toEqual([{ dynamodb: { NewImage: { kind: { S: ['event'] }, type: { S: [...UPDATE_EVENT_TYPES] } } } }]);
      expect(patterns).toEqual(DEPLOYMENT_UPDATE_RECORD_PATTERNS);
      expect(UPDATE_EVENT_TYPES).toEqual(expect.arrayContaining(['RobotUpdateStarted', 'RobotUpdateSucceeded', 'RobotUpdateFailed']));
    });

    it('alarms when it falls 5 minutes behind the stream', () => {
      const fnId = functionsByHandler(iot).get('deployment-orchestrator')!.logicalId;
      iot.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'IteratorAge',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId } }],
        Threshold: 300_000,
      });
    });

    it('holds exactly the store, log, release and IoT Jobs grants it uses', () => {
      const g = grants(statementsOf(iot, 'deployment-orchestrator'));
      const table = (id: string) => expect.stringMatching(new RegExp(`^<import:.*${id}Arn[^>]*>$`));
      for (const action of ['dynamodb:BatchGetItem', 'dynamodb:DeleteItem', 'dynamodb:Query', 'dynamodb:UpdateItem']) {
        expect(g[action], action).toEqual([table(ids.deployments)]);
      }
      for (const action of ['dynamodb:GetItem', 'dynamodb:PutItem']) {
        expect(g[action]!.sort(), action).toEqual(expect.arrayContaining([table(ids.deployments), table(ids.eventLog)]));
        expect(g[action], action).toHaveLength(2);
      }
      expect(g['s3:GetObject']).toEqual([
        expect.stringMatching(new RegExp(`^<import:.*${ids.bucket}Arn.*>/objects/\\*$`)),
        expect.stringMatching(new RegExp(`^<import:.*${ids.bucket}Arn.*>/releases/\\*$`)),
      ]);
      expect(g['s3:ListBucket']).toHaveLength(1);
      for (const action of ['iot:DescribeJob', 'iot:CancelJob', 'iot:ListJobExecutionsForJob']) expect(g[action], action).toEqual([JOB]);
      for (const action of ['iot:CreateJob', 'iot:CancelJobExecution']) expect(g[action], action).toEqual([JOB, thing('lekiwi'), thing('xle')].sort());
      // The stream read comes with the event source mapping; nothing else (no Scan, no writes to S3, no other IoT action).
      const streamActions = ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator', 'dynamodb:ListStreams'];
      const sqsActions = ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'];
      expect(Object.keys(g).sort()).toEqual(
        [
          'dynamodb:BatchGetItem',
          'dynamodb:DeleteItem',
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:Query',
          'dynamodb:UpdateItem',
          ...streamActions,
          ...JOBS_CONTROL,
          's3:GetObject',
          's3:ListBucket',
          ...sqsActions,
        ].sort(),
      );
    });
  });

  describe('stream-deployment-changes', () => {
    const mapping = () => {
      const fn = functionsByHandler(api).get('stream-deployment-changes');
      if (!fn) throw new Error('no function runs functions/handlers/stream-deployment-changes.ts');
      const found = Object.values(api.findResources('AWS::Lambda::EventSourceMapping')).filter((m) => m.Properties.FunctionName?.Ref === fn.logicalId);
      expect(found).toHaveLength(1);
      return found[0]!.Properties;
    };

    it('reads the deployments table’s stream, heads only (the filter of schemas/stream-filters.ts), with retries and an on-failure queue', () => {
      const m = mapping();
      expect(flatten(m.EventSourceArn)).toContain(ids.deployments);
      expect(flatten(m.EventSourceArn)).toMatch(/StreamArn/);
      expect(m.FilterCriteria.Filters.map((f: { Pattern: string }) => JSON.parse(f.Pattern))).toEqual([...DEPLOYMENT_HEAD_RECORD_PATTERNS]);
      expect(m).toMatchObject({ StartingPosition: 'LATEST', BisectBatchOnFunctionError: true, FunctionResponseTypes: ['ReportBatchItemFailures'], ParallelizationFactor: 1, MaximumRetryAttempts: 2 });
      expect(flatten(m.DestinationConfig.OnFailure.Destination)).toMatch(/BroadcasterDlq/);
    });

    it('may look up and forget connections and post to them, and touches no deployment', () => {
      const g = grants(statementsOf(api, 'stream-deployment-changes'));
      const dynamoActions = Object.keys(g).filter((action) => action.startsWith('dynamodb:') && !action.startsWith('dynamodb:GetRecords') && !['dynamodb:GetShardIterator', 'dynamodb:DescribeStream', 'dynamodb:ListStreams'].includes(action));
      expect(dynamoActions.sort()).toEqual(['dynamodb:BatchWriteItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:Query']);
      for (const action of dynamoActions) expect(g[action]!.every((resource) => resource.includes('Connections')), action).toBe(true);
      expect(g['execute-api:ManageConnections']).toHaveLength(1);
    });
  });

  describe('the http-api', () => {
    it('gets the deployments table, the bucket and the thing ARN prefix', () => {
      const e = env(api, 'http-api');
      expect(flatten(e.DEPLOYMENTS_TABLE)).toEqual(imported(ids.deployments, ''));
      expect(flatten(e.ARTIFACT_BUCKET)).toEqual(imported(ids.bucket, ''));
      expect(flatten(e.THING_ARN_PREFIX)).toBe(`arn:<AWS::Partition>:iot:${where}:thing/`);
    });

    it('may use the deployments table, read releases and drive the deployment jobs', () => {
      const g = grants(statementsOf(api, 'http-api'));
      for (const action of ['dynamodb:BatchGetItem', 'dynamodb:DeleteItem', 'dynamodb:Query', 'dynamodb:UpdateItem', 'dynamodb:GetItem', 'dynamodb:PutItem']) {
        expect(g[action]!.some((r) => new RegExp(`^<import:.*${ids.deployments}Arn[^>]*>$`).test(r)), action).toBe(true);
      }
      expect(g['s3:GetObject']).toHaveLength(2);
      expect(g['s3:GetObject']!.every((r) => r.endsWith('/objects/*') || r.endsWith('/releases/*'))).toBe(true);
      for (const action of ['iot:DescribeJob', 'iot:CancelJob', 'iot:ListJobExecutionsForJob']) expect(g[action], action).toEqual([JOB]);
      for (const action of ['iot:CreateJob', 'iot:CancelJobExecution']) expect(g[action], action).toEqual([JOB, thing('lekiwi'), thing('xle')].sort());
      expect(Object.keys(g).filter((a) => a.startsWith('s3:')).sort()).toEqual(['s3:GetObject', 's3:ListBucket']);
    });

    it('reaches the IoT control plane from the isolated subnets: iot.api endpoint, a private zone for its host name', () => {
      const endpoints = Object.entries(api.findResources('AWS::EC2::VPCEndpoint')).filter(([, r]) =>
        flatten(r.Properties.ServiceName).endsWith('.iot.api'),
      );
      expect(endpoints).toHaveLength(1);
      const [endpointId, endpoint] = endpoints[0]!;
      expect(endpoint.Properties.VpcEndpointType).toBe('Interface');
      expect(endpoint.Properties.PrivateDnsEnabled).toBe(false);
      expect(flatten(endpoint.Properties.ServiceName)).toBe('com.amazonaws.<AWS::Region>.iot.api');
      const zones = Object.values(api.findResources('AWS::Route53::HostedZone')).map((z) => flatten(z.Properties.Name));
      expect(zones).toContain('iot.<AWS::Region>.<AWS::URLSuffix>.');
      const records = Object.values(api.findResources('AWS::Route53::RecordSet')).filter((r) =>
        JSON.stringify(r.Properties.AliasTarget).includes(endpointId),
      );
      expect(records).toHaveLength(1);
      expect(records[0]!.Properties.Type).toBe('A');
    });
  });
});
