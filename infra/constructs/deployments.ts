import { Arn, ArnFormat, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, type IConstruct } from 'constructs';
import { ARTIFACT_COMMAND_TOPICS, ARTIFACT_RULE, JOB_EVENTS_RULE } from '../../schemas/deployments.js';
import { ROBOT_MODELS } from '../../schemas/robot-id.js';
import { DEPLOYMENT_HEAD_RECORD_PATTERNS, DEPLOYMENT_UPDATE_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { topicRuleName } from '../../schemas/topics.js';
import { AppFunction } from './app-function.js';
import { nagRegionAccount } from './nag-arn.js';

/**
 * Deployments in AWS (issue 12): where releases live, and the functions that move a deployment along on IoT Jobs.
 *
 *   ArtifactBucket           (stateful stack) `objects/<sha256>` and `releases/<version>.json`, written by
 *                            `npm run release` with an engineer's credentials, read by the functions below and by
 *                            robots through presigned URLs only
 *   DeploymentOrchestration  (IoT stack) the artifact-urls rule and function, the job-events rule and function, the
 *                            deployment-orchestrator on the event log stream, and IoT's job execution events switched on
 *
 * The grant helpers (grantDeploymentStore, grantReleaseReads, grantJobsControl) are what every deployment writer gets:
 * the orchestrator here and the http-api (POST /api/v2/deployments opens batch 0, …/cancel cancels the open job).
 */

/** Where release objects live: `objects/<sha256>` (files and manifests), `releases/<version>.json` (the index). */
export const ARTIFACT_PREFIXES = ['objects/*', 'releases/*'] as const;

/** The Jobs control-plane actions of functions/adapters/iot-jobs-control.ts, and the ones that also name a thing. */
export const JOBS_CONTROL_ACTIONS = ['iot:CreateJob', 'iot:DescribeJob', 'iot:CancelJob', 'iot:ListJobExecutionsForJob', 'iot:CancelJobExecution'] as const;
export const JOBS_THING_ACTIONS = ['iot:CreateJob', 'iot:CancelJobExecution'] as const;
/** Every job the orchestrator makes is `<deploymentId>-b<batch>` (schemas/deployments.ts batchJobId), ids `dep-<ULID>`. */
export const DEPLOYMENT_JOB_PATTERN = 'dep-*';

/** Records per orchestrator invocation: update events are few per robot; one batch open queues up to a batch of robots. */
export const ORCHESTRATOR_BATCH_SIZE = 100;
/** The orchestrator's iterator age above this alarms: a deployment's next batch waits on it. */
export const ORCHESTRATOR_MAX_ITERATOR_AGE = Duration.minutes(5);

/**
 * The artifact bucket: private, TLS only, SSE-S3 (as the project's other buckets; robots download through presigned
 * URLs, which SSE-KMS would tie to a key policy for every signer), versioned so that a deleted or overwritten object
 * can be brought back (releases are content-addressed and written once, so noncurrent versions only appear by
 * mistake, and expire after 30 days), server access logs to a log bucket of its own. Both are kept when the stack
 * goes: robots in the field may be half-way through a release.
 */
export class ArtifactBucket extends Construct {
  readonly bucket: s3.Bucket;
  readonly accessLogs: s3.Bucket;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      // As the dashboard's log bucket: S3 delivers server access logs through the log-delivery ACL CDK grants here.
      objectOwnership: s3.ObjectOwnership.OBJECT_WRITER,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.bucket = new s3.Bucket(this, 'Artifacts', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: [
        { noncurrentVersionExpiration: Duration.days(30) },
        // A release upload that died half-way leaves parts nobody will complete.
        { abortIncompleteMultipartUploadAfter: Duration.days(7) },
      ],
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'artifacts/',
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}

/** `arn:<partition>:iot:<region>:<account>:thing/`: the prefix IotJobsControl puts before a thing name (THING_ARN_PREFIX). */
export function thingArnPrefix(scope: IConstruct): string {
  const stack = Stack.of(scope);
  return `arn:${stack.partition}:iot:${stack.region}:${stack.account}:thing/`;
}

const iotArn = (scope: IConstruct, resource: string, resourceName: string): string =>
  Arn.format({ service: 'iot', resource, resourceName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, Stack.of(scope));

/** Robot things are `<model>-<serial>`: one ARN pattern per model. */
const robotThingArns = (scope: IConstruct): string[] => ROBOT_MODELS.map((model) => iotArn(scope, 'thing', `${model}-*`));

/**
 * The deployments table as functions/adapters/dynamo-deployments.ts uses it: reads (GetItem, BatchGetItem, Query of a
 * deployment's partition and of the list) and writes (PutItem, UpdateItem, DeleteItem, also as the items of its
 * TransactWriteItems). No Scan, no table-level actions.
 */
export function grantDeploymentStore(table: dynamodb.ITable, fn: lambda.IFunction): void {
  table.grant(fn, 'dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem');
}

/**
 * Reading releases and objects (functions/adapters/s3-artifact-store.ts getRelease, objectSizes, presignObject):
 * GetObject (HeadObject too) under the two prefixes, and ListBucket on the bucket, without which S3 answers a missing
 * key with 403 instead of 404 (an unknown release would be an error, a missing object not "missing"). Nothing writes.
 */
export function grantReleaseReads(bucket: s3.IBucket, fn: lambda.IFunction, prefixes: readonly string[] = ARTIFACT_PREFIXES): void {
  const { arn, nagArn } = bucketArnFor(bucket, fn);
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: prefixes.map((prefix) => `${arn}/${prefix}`) }));
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [arn] }));
  for (const prefix of prefixes) {
    Validations.of(fn).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagArn}/${prefix}]`,
      reason: `Release objects are named by their SHA-256 and releases by their version: any key under ${prefix} of the artifact bucket, read only.`,
    });
  }
}

/**
 * IoT Jobs' control plane (functions/adapters/iot-jobs-control.ts): the five actions on the deployment jobs only
 * (`job/dep-*`), and CreateJob / CancelJobExecution also on the robot things, which IAM checks for every target.
 */
export function grantJobsControl(fn: lambda.IFunction): void {
  const jobs = iotArn(fn, 'job', DEPLOYMENT_JOB_PATTERN);
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: [...JOBS_CONTROL_ACTIONS], resources: [jobs] }));
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: [...JOBS_THING_ACTIONS], resources: robotThingArns(fn) }));
  const where = nagRegionAccount(fn);
  Validations.of(fn).acknowledge({
    id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:${where}:job/${DEPLOYMENT_JOB_PATTERN}]`,
    reason: 'Job ids are made per deployment and batch at run time (dep-<ULID>-b<n>); only jobs with the deployment prefix.',
  });
  for (const model of ROBOT_MODELS) {
    Validations.of(fn).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:${where}:thing/${model}-*]`,
      reason: 'A job targets the robots an engineer chose; IAM checks CreateJob and CancelJobExecution on each target thing: only robot things.',
    });
  }
}

/**
 * The bucket's ARN as `fn`'s stack uses it, and as cdk-nag writes it in a finding's id: `<LogicalId.Arn>` in the
 * bucket's own stack; from another stack, the stateful stack's export (the one CDK would make for the reference
 * anyway), whose name cdk-nag writes as it is.
 */
function bucketArnFor(bucket: s3.IBucket, fn: lambda.IFunction): { readonly arn: string; readonly nagArn: string } {
  const cfn = bucket.node.defaultChild as s3.CfnBucket | undefined;
  if (!cfn) throw new Error('grantReleaseReads: the artifact bucket must be an s3.Bucket of this app');
  const producer = Stack.of(cfn);
  const consumer = Stack.of(fn);
  if (producer === consumer) return { arn: bucket.bucketArn, nagArn: `<${producer.getLogicalId(cfn)}.Arn>` };
  const arn = producer.exportValue(bucket.bucketArn);
  const imported = consumer.resolve(arn) as { 'Fn::ImportValue'?: unknown };
  if (typeof imported['Fn::ImportValue'] !== 'string') throw new Error('grantReleaseReads: the bucket ARN export has no literal name');
  return { arn, nagArn: imported['Fn::ImportValue'] };
}

/** The role a topic rule's error action sends with (to the rule error queue), and its policy, created first. */
export interface RuleErrorRole {
  readonly role: iam.IRole;
  readonly policy: IConstruct;
}

export interface DeploymentOrchestrationProps {
  /** The deployment stage: the rules are named after it (`heartbeat_artifact_urls_<stage>`). */
  readonly stage: string;
  readonly eventLog: dynamodb.ITable;
  readonly deployments: dynamodb.ITable;
  readonly artifactBucket: s3.IBucket;
  /** The account's IoT data endpoint host (the artifact-urls replies). */
  readonly iotDataEndpoint: string;
  /** Requests the rules could not hand to their function (and job events job-events failed on). */
  readonly ruleErrorDlq: sqs.IQueue;
  readonly ruleErrors: RuleErrorRole;
  /** The orchestrator's on-failure destination: update events that expired from the stream before it acted. */
  readonly orchestratorDlq: sqs.IQueue;
}

/**
 * The cloud side of a deployment's progress:
 * - artifact-urls: the rule ARTIFACT_RULE hands it a robot's request; it answers with presigned GetObject URLs on
 *   `cmd/heartbeat/<thing>/artifact-urls` (the only topic it may publish to);
 * - job-events: the rule JOB_EVENTS_RULE hands it IoT's job execution events; an end the robot never reported becomes
 *   RobotUpdateFailed{source:'jobs'} in the robot's log;
 * - deployment-orchestrator: the robots' update events from the event log stream drive the deployment (the canary
 *   gate, the next batch, the abort threshold, rollbacks) through IoT Jobs;
 * - IoT's job execution events, switched on for the account (off by default; without them no job-side end arrives).
 */
export class DeploymentOrchestration extends Construct {
  readonly artifactUrls: lambda.IFunction;
  readonly artifactRule: iot.CfnTopicRule;
  readonly jobEvents: lambda.IFunction;
  readonly jobEventsRule: iot.CfnTopicRule;
  readonly orchestrator: lambda.IFunction;
  readonly orchestratorIteratorAge: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: DeploymentOrchestrationProps) {
    super(scope, id);
    const where = nagRegionAccount(this);

    // ---- Download URLs for the objects a robot lacks.
    this.artifactUrls = new AppFunction(this, 'ArtifactUrls', {
      handler: 'artifact-urls',
      description: 'Answers a robot’s request for release objects with short-lived presigned S3 URLs',
      environment: { ARTIFACT_BUCKET: props.artifactBucket.bucketName, IOT_DATA_ENDPOINT: props.iotDataEndpoint },
      timeout: Duration.seconds(30),
    }).fn;
    // Objects only: a robot asks by SHA-256, and the manifest is an object too.
    grantReleaseReads(props.artifactBucket, this.artifactUrls, ['objects/*']);
    this.artifactUrls.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['iot:Publish'], resources: ARTIFACT_COMMAND_TOPICS.map((topic) => iotArn(this, 'topic', topic)) }),
    );
    for (const topic of ARTIFACT_COMMAND_TOPICS) {
      Validations.of(this.artifactUrls).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:${where}:topic/${topic}]`,
        reason: 'Replies go to whichever robot asked (its thing name comes from the rule); only the artifact-urls reply topic.',
      });
    }
    this.artifactRule = lambdaRule(this, 'Rule-artifactUrls', ARTIFACT_RULE, this.artifactUrls, props);

    // ---- IoT Jobs' side of a robot's update.
    this.jobEvents = new AppFunction(this, 'JobEvents', {
      handler: 'job-events',
      description: 'Records a job execution IoT Jobs ended without the robot’s word (timed out, canceled…) in the robot’s log',
      environment: { EVENT_LOG_TABLE: props.eventLog.tableName },
      timeout: Duration.seconds(30),
      // IoT publishes each job end once: an event the function failed on after Lambda's two retries of the
      // asynchronous invocation is kept with the rules' undeliverable messages (alarmed), not dropped, so the robot's
      // outcome can still be redriven into its deployment.
      deadLetterQueue: props.ruleErrorDlq,
    }).fn;
    // RobotUpdateFailed is appended like any robot command: a read of the head, a transaction of Puts.
    props.eventLog.grant(this.jobEvents, 'dynamodb:GetItem', 'dynamodb:PutItem');
    this.jobEventsRule = lambdaRule(this, 'Rule-jobEvents', JOB_EVENTS_RULE, this.jobEvents, props);
    enableJobExecutionEvents(this);

    // ---- The orchestrator.
    this.orchestrator = new AppFunction(this, 'DeploymentOrchestrator', {
      handler: 'deployment-orchestrator',
      description: 'Moves deployments along on the robots’ update events: outcomes, the canary gate, next batches, abort and rollback',
      environment: {
        DEPLOYMENTS_TABLE: props.deployments.tableName,
        EVENT_LOG_TABLE: props.eventLog.tableName,
        ARTIFACT_BUCKET: props.artifactBucket.bucketName,
        THING_ARN_PREFIX: thingArnPrefix(this),
      },
      // Opening a batch queues every robot of it (RobotUpdateQueued, 16 at a time) after CreateJob.
      timeout: Duration.minutes(5),
    }).fn;
    grantDeploymentStore(props.deployments, this.orchestrator);
    // RobotUpdateQueued in the robots' logs (a read of the head, a transaction of Puts).
    props.eventLog.grant(this.orchestrator, 'dynamodb:GetItem', 'dynamodb:PutItem');
    // Releases: a rollback goes back to the version each robot came from.
    grantReleaseReads(props.artifactBucket, this.orchestrator);
    grantJobsControl(this.orchestrator);
    this.orchestrator.addEventSource(
      new DynamoEventSource(props.eventLog, {
        // An update event recorded before the mapping existed still belongs to a running deployment: from the start.
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: ORCHESTRATOR_BATCH_SIZE,
        filters: DEPLOYMENT_UPDATE_RECORD_PATTERNS.map((pattern) => lambda.FilterCriteria.filter(pattern as Record<string, unknown>)),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        // A robot's outcome is never skipped (the canary gate and the abort threshold count them): retry until the
        // record expires from the stream (24 h), then its position lands on the on-failure queue.
        retryAttempts: -1,
        // One batch per shard at a time: a robot's update events in the order they were recorded.
        parallelizationFactor: 1,
        onFailure: new SqsDlq(props.orchestratorDlq),
      }),
    );
    this.orchestratorIteratorAge = this.orchestrator
      .metric('IteratorAge', { period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM })
      .createAlarm(this, 'OrchestratorIteratorAge', {
        alarmDescription:
          'deployment-orchestrator is more than 5 minutes behind the event log stream: deployments do not move on (no next batch, no abort) until it catches up',
        threshold: ORCHESTRATOR_MAX_ITERATOR_AGE.toMilliseconds(),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
  }
}

export interface DeploymentChangeBroadcastProps {
  /** The deployments table, with its NEW_IMAGE stream (stateful stack). */
  readonly deployments: dynamodb.ITable;
  readonly connections: dynamodb.ITable;
  readonly webSocketApi: apigwv2.WebSocketApi;
  readonly webSocketStage: apigwv2.WebSocketStage;
  /** Where batches that exhausted their retries go (the live broadcasters' queue). */
  readonly dlq: sqs.IQueue;
}

/**
 * stream-deployment-changes: the deployments table's stream, heads only (DEPLOYMENT_HEAD_RECORD_PATTERNS as the
 * mapping's filter) → `DeploymentChanged` on every connection subscribed to `*`. On the table's stream rather than
 * pushed by the writers: every committed decision lands there whichever function made it, and a failed batch is
 * retried by the mapping (functions/app/live/deployment-changes.ts).
 */
export class DeploymentChangeBroadcast extends Construct {
  readonly fn: lambda.IFunction;

  constructor(scope: Construct, id: string, props: DeploymentChangeBroadcastProps) {
    super(scope, id);
    this.fn = new AppFunction(this, 'StreamDeploymentChanges', {
      handler: 'stream-deployment-changes',
      description: 'Pushes each committed change of a deployment’s record to the WebSocket connections watching the fleet',
      environment: { CONNECTIONS_TABLE: props.connections.tableName, WS_ENDPOINT: props.webSocketStage.callbackUrl },
      timeout: Duration.seconds(30),
    }).fn;
    // Look up the `*` subscribers; forget a gone connection (read it, delete its items).
    props.connections.grant(this.fn, 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem');
    props.webSocketApi.grantManageConnections(this.fn);
    const webSocketApiId = Stack.of(props.webSocketApi).getLogicalId(props.webSocketApi.node.defaultChild as apigwv2.CfnApi);
    Validations.of(this.fn).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:${nagRegionAccount(this)}:<${webSocketApiId}>/*/*/@connections/*]`,
      reason: 'PostToConnection/DeleteConnection address connection ids that exist only at run time; the grant is limited to this WebSocket API.',
    });
    this.fn.addEventSource(
      new DynamoEventSource(props.deployments, {
        // A change is only news while fresh: a new mapping starts at the tip (the dashboard reads the API on open).
        startingPosition: lambda.StartingPosition.LATEST,
        batchSize: 100,
        filters: DEPLOYMENT_HEAD_RECORD_PATTERNS.map((pattern) => lambda.FilterCriteria.filter(pattern as Record<string, unknown>)),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        // As the robots' live broadcaster: a few retries, then the dashboard's 5 s re-read covers it.
        retryAttempts: 2,
        maxRecordAge: Duration.minutes(5),
        // One batch at a time per shard: a deployment's changes in revision order.
        parallelizationFactor: 1,
        onFailure: new SqsDlq(props.dlq),
      }),
    );
  }
}

/**
 * A rule that invokes `fn` with each message, as the certificate rotation's does: the invoke permission only for this
 * rule of this account, and what IoT could not hand over onto the rule error queue.
 */
function lambdaRule(
  scope: Construct,
  id: string,
  rule: { readonly name: string; readonly sql: string; readonly description: string },
  fn: lambda.IFunction,
  props: DeploymentOrchestrationProps,
): iot.CfnTopicRule {
  const topicRule = new iot.CfnTopicRule(scope, id, {
    ruleName: topicRuleName(rule, props.stage),
    topicRulePayload: {
      sql: rule.sql,
      awsIotSqlVersion: '2016-03-23',
      description: rule.description,
      ruleDisabled: false,
      actions: [{ lambda: { functionArn: fn.functionArn } }],
      errorAction: { sqs: { queueUrl: props.ruleErrorDlq.queueUrl, roleArn: props.ruleErrors.role.roleArn, useBase64: false } },
    },
  });
  topicRule.node.addDependency(props.ruleErrors.role, props.ruleErrors.policy);
  fn.addPermission(`InvokeFrom${id.replace(/^Rule-/, '').replace(/^./, (c) => c.toUpperCase())}Rule`, {
    principal: new iam.ServicePrincipal('iot.amazonaws.com'),
    action: 'lambda:InvokeFunction',
    sourceAccount: Stack.of(scope).account,
    sourceArn: topicRule.attrArn,
  });
  return topicRule;
}

/**
 * IoT publishes job execution events (`$aws/events/jobExecution/…`) only once they are enabled for the account
 * (UpdateEventConfigurations). Enabled on create and update, never disabled: other stages in the account rely on the
 * same setting.
 */
function enableJobExecutionEvents(scope: Construct): void {
  const call: cr.AwsSdkCall = {
    service: 'Iot',
    action: 'updateEventConfigurations',
    parameters: { eventConfigurations: { JOB_EXECUTION: { Enabled: true } } },
    physicalResourceId: cr.PhysicalResourceId.of('iot-job-execution-events'),
  };
  const enable = new cr.AwsCustomResource(scope, 'EnableJobExecutionEvents', {
    resourceType: 'Custom::IotJobExecutionEvents',
    onCreate: call,
    onUpdate: call,
    // UpdateEventConfigurations has no resource-level permissions.
    policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: cr.AwsCustomResourcePolicy.ANY_RESOURCE }),
    installLatestAwsSdk: false,
  });
  Validations.of(enable).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason: 'iot:UpdateEventConfigurations has no resource-level permissions; it only switches on the account’s job execution events.',
  });
}
