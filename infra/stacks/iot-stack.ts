import { Arn, ArnFormat, CfnOutput, Duration, Stack, Validations, type StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, KinesisEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct, IConstruct } from 'constructs';
import { claimPolicy, PROVISIONING_PARAMETERS, provisioningTemplateName } from '../../schemas/provisioning.js';
import type { RobotModel } from '../../schemas/robot-id.js';
import { RESOURCE_TYPE, THING_NAME_VARIABLE, thingPolicy, type ThingPolicyStatement } from '../../schemas/thing-policy.js';
import { INGEST_ACK_TOPICS, TOPIC_RULES, topicRuleName } from '../../schemas/topics.js';
import { ROTATION_COMMANDS, ROTATION_RULE } from '../../schemas/rotation.js';
import { RETIREMENT_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { AppFunction } from '../constructs/app-function.js';
import { DeploymentOrchestration } from '../constructs/deployments.js';
import { IotDataEndpoint } from '../constructs/iot-data-endpoint.js';
import { nagRegionAccount } from '../constructs/nag-arn.js';

/** Thing types are the robot models; the thing name is `<model>-<serial>`. */
export const THING_TYPES = {
  lekiwi: 'LeRobot LeKiwi mobile manipulator',
  xle: 'XLeRobot dual-arm robot',
} as const satisfies Record<RobotModel, string>;
/**
 * Thing type and group names are unique per account and region: each stage has its own (`heartbeat-prod-lekiwi`,
 * `heartbeat-prod-fleet`), published as stack outputs for whoever registers robots.
 */
export const thingTypeName = (stage: string, model: keyof typeof THING_TYPES): string => `heartbeat-${stage}-${model}`;
export const thingGroupName = (stage: string): string => `heartbeat-${stage}-fleet`;
/** The policy variable IoT Core replaces with the connected certificate's thing name. */
export const THING_NAME = THING_NAME_VARIABLE;

/** Records per consumer invocation: a robot's backlog of 10,000 events is 100 records of 100 events. */
export const INGEST_BATCH_SIZE = 500;
/** Batches in flight per shard; records with the same partition key (one robot) still go one batch at a time. */
export const INGEST_PARALLELIZATION = 10;
/** The hook's p99 above this alarms: IoT gives it 5 s, the goal is 500 ms. */
export const PRE_PROVISIONING_HOOK_SLOW_MS = 2_000;

export interface IotStackProps extends StackProps {
  /** The deployment stage (infra/heartbeat.ts checks it): thing types, the group and the rules are named after it. */
  readonly stage: string;
  readonly eventLog: dynamodb.ITable;
  /** The factory's allow-list (the stateful stack's): the pre-provisioning hook reads and claims serials in it. */
  readonly factoryTable: dynamodb.ITable;
  /** The ordered channel: every rule puts into it, keyed by robot. */
  readonly ingestStream: kinesis.IStream;
  /** Records the consumer could not hand over before they expired (the mapping's on-failure destination). */
  readonly ingestDlq: sqs.IQueue;
  /** The rules' error action: messages IoT could not put into the stream. */
  readonly ruleErrorDlq: sqs.IQueue;
  /** The certificate retirer's on-failure destination (event log stream records that expired before it acted). */
  readonly certificateRetirerDlq: sqs.IQueue;
  /** Deployments (issue 12): their records, the releases, and the orchestrator's on-failure destination. */
  readonly deployments: dynamodb.ITable;
  readonly artifactBucket: s3.IBucket;
  readonly orchestratorDlq: sqs.IQueue;
}

/**
 * The robot link: thing types and group, the thing policy, the topic rules, the ingest stream's consumer, and fleet
 * provisioning by claim (the template, its pre-provisioning hook, the claim certificate policy).
 *
 * Every rule puts its messages into the ingest Kinesis stream with the robot as partition key (schemas/topics.ts),
 * instead of invoking a Lambda per message: IoT Core runs a rule's actions concurrently and in any order, so per-
 * message invocations raced for the same robot's head and lost a backlog. The stream keeps each robot's messages in
 * order, and its event source mapping hands them to one consumer (robot-ingest) one batch at a time per robot, with
 * bisection, partial batch failures and retries until the record expires; an alarm fires long before that.
 */
export class IotStack extends Stack {
  readonly ingestFunction: lambda.IFunction;
  readonly thingPolicy: iot.CfnPolicy;
  readonly topicRules: Record<keyof typeof TOPIC_RULES, iot.CfnTopicRule>;
  readonly iteratorAgeAlarm: cloudwatch.Alarm;
  readonly preProvisioningHook: lambda.IFunction;
  readonly provisioningTemplate: iot.CfnProvisioningTemplate;
  readonly claimPolicy: iot.CfnPolicy;
  readonly certificateRotationFunction: lambda.IFunction;
  readonly certificateRotationRule: iot.CfnTopicRule;
  readonly certificateRetirer: lambda.IFunction;
  /** Deployments (issue 12): the artifact-urls and job-events rules and functions, the orchestrator. */
  readonly deploymentOrchestration: DeploymentOrchestration;

  constructor(scope: Construct, id: string, props: IotStackProps) {
    super(scope, id, props);

    const thingTypes = {} as Record<RobotModel, iot.CfnThingType>;
    for (const [model, description] of Object.entries(THING_TYPES) as [RobotModel, string][]) {
      const thingType = new iot.CfnThingType(this, `ThingType-${model}`, {
        thingTypeName: thingTypeName(props.stage, model),
        thingTypeProperties: { thingTypeDescription: description, searchableAttributes: ['serial'] },
      });
      thingTypes[model] = thingType;
      new CfnOutput(this, `ThingTypeName-${model}`, { value: thingType.ref, description: `The thing type of ${model} robots` });
    }
    const fleet = new iot.CfnThingGroup(this, 'FleetGroup', {
      thingGroupName: thingGroupName(props.stage),
      thingGroupProperties: { thingGroupDescription: `Every robot managed by Lekiwi Heartbeat (${props.stage})` },
    });
    new CfnOutput(this, 'ThingGroupName', { value: fleet.ref, description: 'The thing group of every robot of this stage' });

    // Robots reach this stage's telemetry rule through Basic Ingest: the policy names it.
    const telemetryRule = topicRuleName(TOPIC_RULES.telemetry, props.stage);
    this.thingPolicy = new iot.CfnPolicy(this, 'ThingPolicy', { policyDocument: thingPolicyDocument(this, thingPolicy(telemetryRule)) });

    // ---- The consumer, outside the VPC: it appends to DynamoDB and publishes acknowledgements through IoT Core.
    const endpoint = new IotDataEndpoint(this, 'IotDataEndpoint');
    const fn = new AppFunction(this, 'RobotIngest', {
      handler: 'robot-ingest',
      description: 'Ingest stream (robot presence, telemetry, events) to the event log; acknowledgements to robots',
      environment: { EVENT_LOG_TABLE: props.eventLog.tableName, IOT_DATA_ENDPOINT: endpoint.host },
      timeout: Duration.minutes(1),
    }).fn;
    props.eventLog.grantReadWriteData(fn);
    const ackTopicArns = INGEST_ACK_TOPICS.map((topic) =>
      Arn.format({ service: 'iot', resource: 'topic', resourceName: topic, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, this),
    );
    fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:Publish'], resources: ackTopicArns }));
    for (const topic of INGEST_ACK_TOPICS) {
      Validations.of(fn).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:${nagRegionAccount(this)}:topic/${topic}]`,
        reason: 'Acknowledgements go to whichever robot sent the events, so the thing name is a wildcard; only the ack topic.',
      });
    }
    fn.addEventSource(
      new KinesisEventSource(props.ingestStream, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: INGEST_BATCH_SIZE,
        maxBatchingWindow: Duration.seconds(0),
        parallelizationFactor: INGEST_PARALLELIZATION,
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        // Retry until the record expires (the stream's 24 h): a DynamoDB outage delays, it does not lose.
        retryAttempts: -1,
        onFailure: new SqsDlq(props.ingestDlq),
      }),
    );
    this.ingestFunction = fn;
    this.iteratorAgeAlarm = fn
      .metric('IteratorAge', { statistic: cloudwatch.Stats.MAXIMUM, period: Duration.minutes(1) })
      .createAlarm(this, 'IngestIteratorAge', {
        alarmDescription: 'Robot messages wait in the ingest stream for more than 5 minutes (records expire after 24 h)',
        threshold: 5 * 60_000,
        evaluationPeriods: 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });

    // ---- Rules: SQL and partition keys come from schemas/topics.ts, shared with the agent and the local cloud.
    const ruleRole = new iam.Role(this, 'RuleActionRole', {
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com'),
      description: 'Lets the heartbeat IoT rules put robot messages into the ingest stream, and failures on the error queue',
    });
    props.ingestStream.grantWrite(ruleRole);
    props.ruleErrorDlq.grantSendMessages(ruleRole);
    // The grants above live in the role's default policy: until it exists, IoT Core cannot put with the role.
    const ruleRolePolicy = ruleRole.node.tryFindChild('DefaultPolicy');
    if (!ruleRolePolicy) throw new Error('IotStack: the rule action role has no default policy after its grants');

    type RuleKey = keyof typeof TOPIC_RULES;
    const rules = {} as Record<RuleKey, iot.CfnTopicRule>;
    for (const key of Object.keys(TOPIC_RULES) as RuleKey[]) {
      const rule = TOPIC_RULES[key];
      rules[key] = new iot.CfnTopicRule(this, `Rule-${key}`, {
        // Named per stage (rule names are unique per account and region): Basic Ingest topics
        // (`$aws/rules/<name>/...`) address the rule by name, so agents and the thing policy use the same function.
        ruleName: topicRuleName(rule, props.stage),
        topicRulePayload: {
          sql: rule.sql,
          awsIotSqlVersion: '2016-03-23',
          description: rule.description,
          ruleDisabled: false,
          actions: [{ kinesis: { streamName: props.ingestStream.streamName, partitionKey: rule.partitionKey, roleArn: ruleRole.roleArn } }],
          errorAction: { sqs: { queueUrl: props.ruleErrorDlq.queueUrl, roleArn: ruleRole.roleArn, useBase64: false } },
        },
      });
      // The role and its policy must exist before IoT Core accepts a rule that names the role (and before the
      // first message arrives): CloudFormation creates the rules after both.
      rules[key].node.addDependency(ruleRole, ruleRolePolicy);
    }
    this.topicRules = rules;

    ({ hook: this.preProvisioningHook, template: this.provisioningTemplate, claimPolicy: this.claimPolicy } = this.fleetProvisioning(props, {
      thingTypes,
      fleet,
      thingPolicy: this.thingPolicy,
    }));

    ({ fn: this.certificateRotationFunction, rule: this.certificateRotationRule } = this.certificateRotation(props, endpoint, {
      role: ruleRole,
      policy: ruleRolePolicy,
    }));

    this.certificateRetirer = certificateRetirerResources(this, props);

    this.deploymentOrchestration = new DeploymentOrchestration(this, 'Deployments', {
      stage: props.stage,
      eventLog: props.eventLog,
      deployments: props.deployments,
      artifactBucket: props.artifactBucket,
      iotDataEndpoint: endpoint.host,
      ruleErrorDlq: props.ruleErrorDlq,
      ruleErrors: { role: ruleRole, policy: ruleRolePolicy },
      orchestratorDlq: props.orchestratorDlq,
    });

    new CfnOutput(this, 'ThingPolicyName', {
      value: this.thingPolicy.ref,
      description: 'Attach to each robot certificate (the provisioning template does this)',
    });
    new CfnOutput(this, 'IngestStreamName', { value: props.ingestStream.streamName });
    new CfnOutput(this, 'TelemetryRuleName', {
      value: rules.telemetry.ref,
      description: 'The Basic Ingest rule of this stage: the agent config `telemetryRule`',
    });
  }

  private certificateRotation(
    props: IotStackProps,
    endpoint: IotDataEndpoint,
    ruleErrors: RuleErrorRole,
  ): { fn: lambda.IFunction; rule: iot.CfnTopicRule } {
    return certificateRotationResources(this, props, endpoint, ruleErrors);
  }

  /**
   * Zero-touch provisioning by claim (issue 11): a robot connects with its batch's claim certificate (the claim policy
   * allows the two provisioning exchanges and nothing else), gets a certificate for the key it made, and registers
   * through the template; IoT asks the pre-provisioning hook first, which admits only a serial the factory
   * registered, within its batch's allowance.
   */
  private fleetProvisioning(
    props: IotStackProps,
    targets: { thingTypes: Record<RobotModel, iot.CfnThingType>; fleet: iot.CfnThingGroup; thingPolicy: iot.CfnPolicy },
  ): { hook: lambda.IFunction; template: iot.CfnProvisioningTemplate; claimPolicy: iot.CfnPolicy } {
    const templateName = provisioningTemplateName(props.stage);
    const templateArn = Arn.format(
      { service: 'iot', resource: 'provisioningtemplate', resourceName: templateName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME },
      this,
    );

    // IoT waits 5 s for the hook, then refuses the registration: the function may not outlive that.
    const hook = new AppFunction(this, 'PreProvisioningHook', {
      handler: 'pre-provisioning-hook',
      description: 'Fleet provisioning: admits only serials the factory registered, within their batch allowance',
      environment: { FACTORY_TABLE: props.factoryTable.tableName, EVENT_LOG_TABLE: props.eventLog.tableName },
      timeout: Duration.seconds(5),
    }).fn;
    // Exactly what functions/adapters/dynamo-factory-registry.ts does for the hook: one BatchGetItem reads the serial's
    // record and the robot's head (a second GetItem of the head when the robot named no or a wrong model); one
    // transaction updates the record, takes a place in the batch or only checks the claim certificate
    // (ConditionCheck), and appends RobotProvisioned with the new head (Puts); a refusal is remembered (UpdateItem).
    // Transactions are authorised per item action.
    props.factoryTable.grant(hook, 'dynamodb:BatchGetItem', 'dynamodb:UpdateItem', 'dynamodb:ConditionCheckItem');
    props.eventLog.grant(hook, 'dynamodb:BatchGetItem', 'dynamodb:GetItem', 'dynamodb:PutItem');
    // A refusal is an answer; an error is not: IoT then tells a robot the factory registered ACCESS_DENIED (a claim
    // that lost its race 8 times, DynamoDB failing), and the line sees robots that will not come online.
    hook
      .metricErrors({ period: Duration.minutes(1), statistic: cloudwatch.Stats.SUM })
      .createAlarm(this, 'PreProvisioningHookErrors', {
        alarmDescription: 'The pre-provisioning hook failed: IoT refused those registrations whatever the allow-list says',
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    hook
      .metricDuration({ period: Duration.minutes(5), statistic: cloudwatch.Stats.p(99) })
      .createAlarm(this, 'PreProvisioningHookSlow', {
        alarmDescription: 'The pre-provisioning hook p99 is above 2 s; IoT refuses a registration whose hook takes over 5 s',
        threshold: PRE_PROVISIONING_HOOK_SLOW_MS,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    hook.addPermission('InvokeFromProvisioningTemplate', {
      principal: new iam.ServicePrincipal('iot.amazonaws.com'),
      action: 'lambda:InvokeFunction',
      // Only this stage's template, in this account, may call it (no confused deputy).
      sourceAccount: this.account,
      sourceArn: templateArn,
    });

    const role = new iam.Role(this, 'ProvisioningRole', {
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com'),
      description: 'Lets IoT fleet provisioning create the robot thing, activate its certificate and attach the thing policy',
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSIoTThingsRegistration')],
    });
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSIoTThingsRegistration]',
      reason:
        'AWSIoTThingsRegistration is the AWS-maintained role policy that fleet provisioning documents for the provisioning role: ' +
        'it covers registering things, certificates and policy attachments, which only IoT itself assumes this role to do.',
    });

    const template = new iot.CfnProvisioningTemplate(this, 'ProvisioningTemplate', {
      templateName,
      description: `Robots of ${props.stage} provisioning by claim: thing <model>-<serial>, its type, the fleet group, the thing policy`,
      enabled: true,
      templateType: 'FLEET_PROVISIONING',
      provisioningRoleArn: role.roleArn,
      preProvisioningHook: { targetArn: hook.functionArn, payloadVersion: '2020-04-01' },
      templateBody: this.toJsonString(
        provisioningTemplateBody({
          thingTypeNames: Object.fromEntries(
            Object.entries(targets.thingTypes).map(([model, thingType]) => [model, thingType.ref]),
          ) as Record<RobotModel, string>,
          thingGroupName: targets.fleet.ref,
          thingPolicyName: targets.thingPolicy.ref,
        }),
      ),
    });
    // IoT checks that it may invoke the hook and pass the role when the template is created.
    template.node.addDependency(hook.node.findChild('InvokeFromProvisioningTemplate'), role);

    const claim = new iot.CfnPolicy(this, 'ClaimPolicy', { policyDocument: thingPolicyDocument(this, claimPolicy(templateName)) });

    new CfnOutput(this, 'ProvisioningTemplateName', {
      value: template.ref,
      description: 'The fleet provisioning template robots register through (RegisterThing): goes into the boot bundle',
    });
    new CfnOutput(this, 'ClaimPolicyName', {
      value: claim.ref,
      description: "Attach to each batch's claim certificate: it allows the provisioning exchanges and nothing else",
    });
    return { hook, template, claimPolicy: claim };
  }
}

/**
 * Certificate rotation with no gap (issue 11, item 4; schemas/rotation.ts): the rule hands a robot's rotation request
 * and confirm to the CertificateRotation function, which signs the CSR into a certificate attached to the robot's own
 * thing and, on the confirm, deactivates and detaches the old one. Its role holds exactly the IoT actions the adapter
 * (functions/adapters/iot-certificate-registry.ts) calls, scoped to robot things and certificates where IAM allows.
 */
/** The role every topic rule's error action sends with (to the rule error queue), and its policy, created first. */
interface RuleErrorRole {
  readonly role: iam.IRole;
  readonly policy: IConstruct;
}

function certificateRotationResources(
  stack: IotStack,
  props: IotStackProps,
  endpoint: IotDataEndpoint,
  ruleErrors: RuleErrorRole,
): { fn: lambda.IFunction; rule: iot.CfnTopicRule } {
  const fn = new AppFunction(stack, 'CertificateRotation', {
    handler: 'certificate-rotation',
    description: "Certificate rotation: signs a robot's CSR for its own thing; deactivates the old certificate once the new one is confirmed",
    environment: { EVENT_LOG_TABLE: props.eventLog.tableName, IOT_DATA_ENDPOINT: endpoint.host },
    timeout: Duration.seconds(30),
  }).fn;
  // CertificateRotated is appended like the hook's RobotProvisioned: a read of the head, a transaction of Puts.
  props.eventLog.grant(fn, 'dynamodb:GetItem', 'dynamodb:PutItem');
  const arn = (resource: string, resourceName: string) =>
    Arn.format({ service: 'iot', resource, resourceName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, stack);
  const robotThings = (Object.keys(THING_TYPES) as RobotModel[]).map((model) => arn('thing', `${model}-*`));
  const certificates = arn('cert', '*');
  // CreateCertificateFromCsr and ListPrincipalThings name no resource IAM can scope (the certificate does not exist yet).
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:CreateCertificateFromCsr', 'iot:ListPrincipalThings'], resources: ['*'] }));
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:AttachThingPrincipal', 'iot:DetachThingPrincipal'], resources: robotThings }));
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:DescribeCertificate', 'iot:UpdateCertificate'], resources: [certificates] }));
  const replyTopics = [ROTATION_COMMANDS.issued, ROTATION_COMMANDS.rotated].map((request) => `cmd/heartbeat/*/${request}`);
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:Publish'], resources: replyTopics.map((topic) => arn('topic', topic)) }));
  const where = nagRegionAccount(stack);
  for (const [resource, reason] of [
    ['*', 'CreateCertificateFromCsr creates a certificate that has no ARN yet, and ListPrincipalThings has no resource type: IAM allows only *.'],
    ...(Object.keys(THING_TYPES) as RobotModel[]).map((model) => [`arn:<AWS::Partition>:iot:${where}:thing/${model}-*`, 'Any robot of the model may rotate: its thing name comes from the rule (the thing policy makes it the publisher), so only robot things.']),
    [`arn:<AWS::Partition>:iot:${where}:cert/*`, "Certificate ids come from the robot's messages; the function checks each is attached to the robot's own thing before it changes it."],
    ...replyTopics.map((topic) => [`arn:<AWS::Partition>:iot:${where}:topic/${topic}`, 'Replies go to whichever robot asked; only the two rotation reply topics.']),
  ] as const) {
    Validations.of(fn).acknowledge({ id: `AwsSolutions-IAM5[Resource::${resource}]`, reason });
  }
  const rule = new iot.CfnTopicRule(stack, 'Rule-certificateRotation', {
    ruleName: topicRuleName(ROTATION_RULE, props.stage),
    topicRulePayload: {
      sql: ROTATION_RULE.sql,
      awsIotSqlVersion: '2016-03-23',
      description: ROTATION_RULE.description,
      ruleDisabled: false,
      actions: [{ lambda: { functionArn: fn.functionArn } }],
      // A request the function could not be invoked with lands on the rule error queue, as the ingest rules' do.
      errorAction: { sqs: { queueUrl: props.ruleErrorDlq.queueUrl, roleArn: ruleErrors.role.roleArn, useBase64: false } },
    },
  });
  rule.node.addDependency(ruleErrors.role, ruleErrors.policy);
  fn.addPermission('InvokeFromRotationRule', {
    principal: new iam.ServicePrincipal('iot.amazonaws.com'),
    action: 'lambda:InvokeFunction',
    sourceAccount: stack.account,
    sourceArn: rule.attrArn,
  });
  return { fn, rule };
}

/**
 * The certificate retirer (functions/app/retire-certificates.ts) on the event log stream: a re-imaged robot's
 * superseded certificate REVOKED and detached, an abandoned rotation's new certificate INACTIVE and detached. Its
 * role holds DescribeCertificate (status and ARN, for idempotence), UpdateCertificate on certificates and
 * DetachThingPrincipal on robot things: nothing that creates or attaches. It retries until a record expires from
 * the stream (24 h), then the record's position lands on its dead-letter queue (alarmed in the stateful stack).
 */
function certificateRetirerResources(stack: IotStack, props: IotStackProps): lambda.IFunction {
  const fn = new AppFunction(stack, 'StreamCertificateRetirer', {
    handler: 'stream-certificate-retirer',
    description: "Revokes a re-imaged robot's superseded certificate; deactivates the new certificate of an abandoned rotation",
    environment: { EVENT_LOG_TABLE: props.eventLog.tableName },
    timeout: Duration.seconds(30),
  }).fn;
  // The robot's head (which certificate it uses now), read strongly consistent.
  props.eventLog.grant(fn, 'dynamodb:GetItem');
  const arn = (resource: string, resourceName: string) =>
    Arn.format({ service: 'iot', resource, resourceName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, stack);
  const robotThings = (Object.keys(THING_TYPES) as RobotModel[]).map((model) => arn('thing', `${model}-*`));
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:DetachThingPrincipal'], resources: robotThings }));
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:DescribeCertificate', 'iot:UpdateCertificate'], resources: [arn('cert', '*')] }));
  const where = nagRegionAccount(stack);
  for (const [resource, reason] of [
    ...(Object.keys(THING_TYPES) as RobotModel[]).map((model) => [`arn:<AWS::Partition>:iot:${where}:thing/${model}-*`, "Any robot of the model may be re-imaged or abandon a rotation; only robot things, and only to detach."]),
    [`arn:<AWS::Partition>:iot:${where}:cert/*`, 'Certificate ids come from the event log (the hook and the rotation recorded them); IAM cannot name a certificate before it exists.'],
  ] as const) {
    Validations.of(fn).acknowledge({ id: `AwsSolutions-IAM5[Resource::${resource}]`, reason });
  }
  fn.addEventSource(
    new DynamoEventSource(props.eventLog, {
      // A re-image recorded before the mapping existed still needs its old certificate revoked: from the start.
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      batchSize: 100,
      filters: RETIREMENT_RECORD_PATTERNS.map((pattern) => lambda.FilterCriteria.filter(pattern as Record<string, unknown>)),
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      // A revocation is never skipped for a passing outage: retry until the record expires (24 h), then the
      // on-failure queue keeps where it was.
      retryAttempts: -1,
      parallelizationFactor: 1,
      onFailure: new SqsDlq(props.certificateRetirerDlq),
    }),
  );
  fn.metric('IteratorAge', { period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM }).createAlarm(stack, 'CertificateRetirerIteratorAge', {
    alarmDescription:
      "stream-certificate-retirer is more than 15 minutes behind the event log stream: superseded or abandoned certificates stay usable until it catches up (the reason is in its log, message 'certificate retirement failed')",
    threshold: 15 * 60_000,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    evaluationPeriods: 1,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
  return fn;
}

export interface ProvisioningTemplateTargets {
  /** The thing type of each model, by reference (the template is created after them). */
  readonly thingTypeNames: Record<RobotModel, string>;
  readonly thingGroupName: string;
  readonly thingPolicyName: string;
}

/**
 * The fleet provisioning template's body (https://docs.aws.amazon.com/iot/latest/developerguide/provision-template.html):
 * the thing `ThingName` (the hook overrides it with `<model>-<serial>` from the factory's record, so a robot cannot
 * name itself), of the thing type of `Model` (a mapping: a model without a thing type fails the registration), in the
 * fleet group, with the serial and batch as attributes; the certificate from CreateCertificateFromCsr, activated;
 * the thing policy attached by name.
 *
 * A re-image registers under the same thing name again: the thing is kept (its attributes merged, its type and its
 * groups left as they are, operators may have moved it), the new certificate is attached beside the old one, which
 * the re-image flow deactivates and revokes.
 */
export function provisioningTemplateBody(targets: ProvisioningTemplateTargets): Record<string, unknown> {
  const p = PROVISIONING_PARAMETERS;
  const ref = (name: string) => ({ Ref: name });
  return {
    Parameters: {
      [p.serial]: { Type: 'String' },
      [p.model]: { Type: 'String' },
      [p.thingName]: { Type: 'String' },
      [p.batch]: { Type: 'String' },
      'AWS::IoT::Certificate::Id': { Type: 'String' },
    },
    Mappings: {
      ThingTypes: Object.fromEntries(
        Object.entries(targets.thingTypeNames).map(([model, name]) => [model, { ThingTypeName: name }]),
      ),
    },
    Resources: {
      thing: {
        Type: 'AWS::IoT::Thing',
        Properties: {
          ThingName: ref(p.thingName),
          ThingTypeName: { 'Fn::FindInMap': ['ThingTypes', ref(p.model), 'ThingTypeName'] },
          ThingGroups: [targets.thingGroupName],
          AttributePayload: { serial: ref(p.serial), batch: ref(p.batch) },
        },
        OverrideSettings: { AttributePayload: 'MERGE', ThingTypeName: 'DO_NOTHING', ThingGroups: 'DO_NOTHING' },
      },
      certificate: {
        Type: 'AWS::IoT::Certificate',
        Properties: { CertificateId: ref('AWS::IoT::Certificate::Id'), Status: 'ACTIVE' },
      },
      policy: {
        Type: 'AWS::IoT::Policy',
        Properties: { PolicyName: targets.thingPolicyName },
      },
    },
  };
}

/**
 * The policy every robot certificate carries, built from schemas/thing-policy.ts (the local broker enforces the same
 * statements). Each resource names the connected thing through `${iot:Connection.Thing.ThingName}`, so a robot can
 * connect, publish and subscribe only as itself. The ARNs are built with Fn::Join (never Fn::Sub, which would try to
 * resolve the policy variable).
 */
export function thingPolicyDocument(stack: Stack, policy: readonly ThingPolicyStatement[]): Record<string, unknown> {
  const iotArn = (resource: string, resourceName: string): string =>
    Arn.format({ service: 'iot', resource, resourceName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, stack);
  return {
    Version: '2012-10-17',
    Statement: policy.map((statement) => {
      const arns = statement.resources.map((name) => iotArn(RESOURCE_TYPE[statement.action], name));
      return {
        Sid: statement.sid,
        Effect: 'Allow',
        Action: `iot:${statement.action}`,
        Resource: arns.length === 1 ? arns[0] : arns,
        ...(statement.condition ? { Condition: statement.condition } : {}),
      };
    }),
  };
}
