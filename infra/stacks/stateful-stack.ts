import { CfnCondition, CfnOutput, CfnParameter, Duration, Fn, RemovalPolicy, Stack, Validations, type StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { CONNECTIONS_TABLE, DEPLOYMENTS_TABLE, EVENT_LOG_TABLE, FACTORY_TABLE, type TableKeys } from '../../schemas/tables.js';
import { ArtifactBucket } from '../constructs/deployments.js';

/** The PostgreSQL role the Lambdas log in as (through RDS Proxy, with IAM tokens) and the database they use. */
export const DB_USER = 'heartbeat_admin';
export const DB_NAME = 'heartbeat';
export const DB_PORT = 5432;

/** Cognito groups, from least to most privileged; the HTTP API maps them to roles. */
export const USER_GROUPS = ['operator', 'engineer', 'admin'] as const;

export interface StatefulStackProps extends StackProps {
  /**
   * The Cognito prefix domain of the hosted sign-in UI: `https://<prefix>.auth.<region>.amazoncognito.com`. Prefixes
   * are unique per region across all AWS accounts: lower-case letters, digits and hyphens, without "aws", "amazon" or
   * "cognito".
   */
  readonly cognitoDomainPrefix: string;
}

/**
 * Everything that holds data or identity and must survive a redeploy of the code: the event log, the factory's
 * allow-list, the deployments and their releases, the WebSocket connections, the read-model database with its proxy
 * and network, the dead-letter queues and the user pool.
 * The stateless stacks receive these constructs through props.
 */
export class StatefulStack extends Stack {
  readonly eventLog: dynamodb.Table;
  readonly connections: dynamodb.Table;
  /** The factory's allow-list of serials and its batches (issue 11), read and claimed by the pre-provisioning hook. */
  readonly factory: dynamodb.Table;
  readonly vpc: ec2.Vpc;
  /** The subnets for everything that talks to PostgreSQL. */
  readonly dbSubnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED };
  readonly database: rds.DatabaseCluster;
  readonly proxy: rds.DatabaseProxy;
  /** Attach this group to a function to let it reach the proxy on 5432; nothing else is allowed in. */
  readonly dbClientSecurityGroup: ec2.SecurityGroup;
  readonly projectorDlq: sqs.Queue;
  readonly broadcasterDlq: sqs.Queue;
  /**
   * The ordered channel every robot message travels through (IoT rules → here, partition key = thing name → the
   * ingest consumer): one robot's presence, telemetry and events in the order IoT Core received them.
   */
  readonly ingestStream: kinesis.Stream;
  /** Where the ingest consumer's mapping sends what it could not hand over before the records expired. */
  readonly ingestDlq: sqs.Queue;
  /** Messages an IoT rule could not put into the ingest stream at all (the rules' error action). */
  readonly iotRuleErrorDlq: sqs.Queue;
  /** The certificate retirer's on-failure destination: re-images and abandoned rotations it could not act on. */
  readonly certificateRetirerDlq: sqs.Queue;
  /**
   * Deployments (issue 12): each deployment's record, robots, batches and pending effects (schemas/tables.ts
   * DEPLOYMENTS_TABLE), written by the http-api and the deployment orchestrator.
   */
  readonly deployments: dynamodb.Table;
  /** Releases: `objects/<sha256>` and `releases/<version>.json` (infra/constructs/deployments.ts ArtifactBucket). */
  readonly artifactBucket: s3.Bucket;
  /** The deployment orchestrator's on-failure destination: update events that expired from the stream first. */
  readonly orchestratorDlq: sqs.Queue;
  readonly userPool: cognito.UserPool;
  /** The hosted UI's domain. The dashboard's app client lives with the dashboard (infra/constructs/dashboard-hosting.ts). */
  readonly userPoolDomain: cognito.UserPoolDomain;
  /**
   * Where every alarm of the stage notifies (the dead-letter queues here, the iterator ages and set-aside records in
   * the other stacks: each add…Stack in infra/heartbeat.ts adds the action to all of them); the `AlarmEmail`
   * parameter subscribes an address to it.
   */
  readonly alarmTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);

    this.alarmTopic = this.alarmNotifications();

    // ---- Event log: one partition per robot, one item per event, plus the head item per robot.
    this.eventLog = new dynamodb.Table(this, 'EventLog', {
      ...tableKeys(EVENT_LOG_TABLE),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      stream: dynamodb.StreamViewType.NEW_IMAGE,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      // The log is the source of truth: the read models can be rebuilt from it, not the other way round.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---- WebSocket connections and their subscriptions; API Gateway drops a connection after 2 h anyway.
    this.connections = new dynamodb.Table(this, 'Connections', {
      ...tableKeys(CONNECTIONS_TABLE),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: CONNECTIONS_TABLE.timeToLiveAttribute,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(this.connections).acknowledge({
      id: 'AwsSolutions-DDB3',
      reason:
        'Connections are ephemeral (API Gateway closes a WebSocket after at most 2 hours and items expire by TTL); a restore would only bring back dead connection ids.',
    });

    // ---- The factory's allow-list: which serials may provision, and how many robots each batch's claim may admit.
    // Records, not a cache: a lost claim count would let a leaked claim certificate register robots again.
    this.factory = new dynamodb.Table(this, 'Factory', {
      ...tableKeys(FACTORY_TABLE),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---- Deployments (issue 12): the record of every rollout, which robots it holds and which jobs it opened. A lost
    // record would leave IoT jobs running that nothing follows: kept like the log.
    this.deployments = new dynamodb.Table(this, 'Deployments', {
      ...tableKeys(DEPLOYMENTS_TABLE),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      // Each committed head write → DeploymentChanged on the live feed (infra/constructs/deployments.ts DeploymentChangeBroadcast).
      stream: dynamodb.StreamViewType.NEW_IMAGE,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.artifactBucket = new ArtifactBucket(this, 'Releases').bucket;

    // ---- Network: isolated subnets only. Nothing here needs the internet: Lambda reads streams through its
    // event source mapping, DynamoDB is reached through a gateway endpoint, and IAM database tokens are signed locally.
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 }],
      // Restricting the default security group needs a custom-resource Lambda; nothing is ever placed in it.
      restrictDefaultSecurityGroup: false,
    });
    this.vpc.addGatewayEndpoint('DynamoDbEndpoint', {
      service: ec2.GatewayVpcEndpointAwsService.DYNAMODB,
      subnets: [this.dbSubnets],
    });
    // The http-api reads releases (POST /deployments) from the artifact bucket.
    this.vpc.addGatewayEndpoint('S3Endpoint', {
      service: ec2.GatewayVpcEndpointAwsService.S3,
      subnets: [this.dbSubnets],
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        new logs.LogGroup(this, 'FlowLogGroup', {
          retention: logs.RetentionDays.ONE_MONTH,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
      ),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });

    // ---- Read models: Aurora PostgreSQL Serverless v2 behind RDS Proxy.
    const clusterIdentifier = `${this.stackName}-read-models`.toLowerCase();
    const postgresLogs = new logs.LogGroup(this, 'PostgresLogGroup', {
      // RDS writes exported logs here; created first so that it has a retention (RDS would create it without one).
      logGroupName: `/aws/rds/cluster/${clusterIdentifier}/postgresql`,
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.database = new rds.DatabaseCluster(this, 'ReadModels', {
      clusterIdentifier,
      engine: rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_17_7 }),
      credentials: rds.Credentials.fromGeneratedSecret(DB_USER),
      defaultDatabaseName: DB_NAME,
      writer: rds.ClusterInstance.serverlessV2('Writer', {
        publiclyAccessible: false,
        autoMinorVersionUpgrade: true,
        enablePerformanceInsights: true,
      }),
      // 0.5 rather than 0: an auto-paused instance takes seconds to resume, which the live dashboard and the
      // projector would feel on every quiet period.
      serverlessV2MinCapacity: 0.5,
      serverlessV2MaxCapacity: 8,
      vpc: this.vpc,
      vpcSubnets: this.dbSubnets,
      storageEncrypted: true,
      iamAuthentication: true,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.SNAPSHOT,
      backup: { retention: Duration.days(7) },
      cloudwatchLogsExports: ['postgresql'],
      enablePerformanceInsights: true,
    });
    this.database.node.addDependency(postgresLogs);
    Validations.of(this.database).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The generated master secret is read only by RDS Proxy; applications authenticate to the proxy with 15-minute IAM tokens. ' +
        'Rotation needs a rotation Lambda with a Secrets Manager endpoint in this NAT-less VPC; it is planned, not yet built.',
    });

    this.dbClientSecurityGroup = new ec2.SecurityGroup(this, 'DbClientSecurityGroup', {
      vpc: this.vpc,
      description: 'Lambda functions that query the read models through RDS Proxy',
      allowAllOutbound: true,
    });
    // The projector sets aside stream records it cannot parse on its dead-letter queue: SQS from the isolated
    // subnets needs an interface endpoint (private DNS, so the SDK's default endpoint resolves to it).
    const sqsEndpoint = this.vpc.addInterfaceEndpoint('SqsEndpoint', {
      service: ec2.InterfaceVpcEndpointAwsService.SQS,
      subnets: this.dbSubnets,
      privateDnsEnabled: true,
      open: false,
    });
    sqsEndpoint.connections.allowDefaultPortFrom(this.dbClientSecurityGroup, 'HTTPS to SQS from the VPC Lambda functions');
    const proxySecurityGroup = new ec2.SecurityGroup(this, 'ProxySecurityGroup', {
      vpc: this.vpc,
      description: 'RDS Proxy in front of the read-model cluster',
      allowAllOutbound: true,
    });
    this.proxy = this.database.addProxy('Proxy', {
      // Proxy names are unique per account and region (without one CDK would name it after the construct id,
      // "Proxy", in every stage). Derived from the stack name like the cluster identifier: letters, digits, hyphens.
      dbProxyName: `${this.stackName}-proxy`.toLowerCase(),
      secrets: [this.database.secret!],
      vpc: this.vpc,
      vpcSubnets: this.dbSubnets,
      securityGroups: [proxySecurityGroup],
      iamAuth: true,
      requireTLS: true,
      debugLogging: false,
    });
    proxySecurityGroup.addIngressRule(
      this.dbClientSecurityGroup,
      ec2.Port.tcp(DB_PORT),
      'PostgreSQL from the read-model Lambda functions',
    );

    // ---- Dead-letter queues. Each is the terminal stop of a failure path (an on-failure destination or an error
    // action), watched by an alarm; 14 days is SQS's maximum retention, time enough to inspect and redrive.
    // The projector retries until a record expires from the stream (24 h): what lands here is what it never got to
    // project, which its IteratorAge alarm will have announced for hours. The records it cannot parse it sets aside
    // itself, with the reason (StreamRecordsSetAside); their events are read back from the log.
    this.projectorDlq = this.deadLetterQueue('ProjectorDlq', 'stream-projector: stream records that expired from the stream before they could be projected');
    this.broadcasterDlq = this.deadLetterQueue('BroadcasterDlq', 'stream-broadcaster: stream batches that exhausted their retries');
    this.ingestDlq = this.deadLetterQueue('IngestDlq', 'robot-ingest: ingest stream records that expired before they could be written');
    this.iotRuleErrorDlq = this.deadLetterQueue(
      'IotRuleErrorDlq',
      'IoT topic rules: messages their action could not deliver (the ingest stream, a function), and job events job-events failed on',
    );
    this.certificateRetirerDlq = this.deadLetterQueue(
      'CertificateRetirerDlq',
      'stream-certificate-retirer: certificates to revoke or deactivate whose records expired from the stream first',
    );
    this.orchestratorDlq = this.deadLetterQueue(
      'DeploymentOrchestratorDlq',
      'deployment-orchestrator: robots’ update events that expired from the stream before the deployment recorded them',
    );

    // ---- The ingest channel. On-demand capacity follows the fleet (a boot storm, a backlog); 24 h retention is how
    // long the consumer may be stuck (the iterator-age alarm fires after minutes) before a record expires.
    this.ingestStream = new kinesis.Stream(this, 'IngestStream', {
      streamMode: kinesis.StreamMode.ON_DEMAND,
      encryption: kinesis.StreamEncryption.MANAGED,
      retentionPeriod: Duration.hours(24),
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---- Users of the dashboard and the HTTP API. Administrators create accounts; there is no self sign-up.
    this.userPool = new cognito.UserPool(this, 'UserPool', {
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      passwordPolicy: {
        minLength: 12,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
        tempPasswordValidity: Duration.days(3),
      },
      // These users can mark robots failed and (later) deploy software to the fleet: a second factor is required.
      mfa: cognito.Mfa.REQUIRED,
      mfaSecondFactor: { otp: true, sms: false },
      featurePlan: cognito.FeaturePlan.PLUS,
      standardThreatProtectionMode: cognito.StandardThreatProtectionMode.FULL_FUNCTION,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    USER_GROUPS.forEach((groupName, index) => {
      this.userPool.addGroup(`Group-${groupName}`, {
        groupName,
        description: `Heartbeat ${groupName}`,
        // Lower precedence wins when a user is in several groups: admin first.
        precedence: USER_GROUPS.length - index,
      });
    });
    // The hosted UI (authorization code grant with PKCE) the dashboard signs in with.
    this.userPoolDomain = this.userPool.addDomain('HostedUi', {
      cognitoDomain: { domainPrefix: props.cognitoDomainPrefix },
    });

    new CfnOutput(this, 'EventLogTableName', { value: this.eventLog.tableName });
    new CfnOutput(this, 'FactoryTableName', {
      value: this.factory.tableName,
      description: 'The factory allow-list: `npm run factory -- … --table <this>` (or FACTORY_TABLE)',
    });
    new CfnOutput(this, 'DeploymentsTableName', { value: this.deployments.tableName });
    new CfnOutput(this, 'ArtifactBucketName', {
      value: this.artifactBucket.bucketName,
      description: 'Where releases are published: `npm run release -- --dir <folder> --version <v> --bucket <this>`',
    });
    new CfnOutput(this, 'UserPoolId', { value: this.userPool.userPoolId });
    new CfnOutput(this, 'HostedUiDomain', {
      value: this.userPoolDomain.domainName,
      description: 'Cognito prefix domain of the sign-in page: https://<this>.auth.<region>.amazoncognito.com',
    });
    new CfnOutput(this, 'ProxyEndpoint', { value: this.proxy.endpoint });
  }

  private deadLetterQueue(id: string, purpose: string): sqs.Queue {
    const queue = new sqs.Queue(this, id, {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(queue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: `This queue is itself a dead-letter queue (${purpose}); a DLQ of a DLQ would only move the problem.`,
    });
    queue
      .metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM })
      .createAlarm(this, `${id}NotEmpty`, {
        alarmDescription: `Messages waiting in the dead-letter queue of ${purpose}`,
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    return queue;
  }

  /**
   * The stage's alarm topic: encrypted with a key of its own (CloudWatch cannot publish to a topic under the
   * AWS-managed SNS key, whose policy cannot be changed), TLS only, and an e-mail subscription when the `AlarmEmail`
   * parameter is given (`cdk deploy --parameters <stack>:AlarmEmail=ops@example.com`; empty: no subscription).
   */
  private alarmNotifications(): sns.Topic {
    const email = new CfnParameter(this, 'AlarmEmail', {
      type: 'String',
      default: '',
      description: 'E-mail address notified of every alarm of this stage (empty: none; subscribe to the AlarmTopic output otherwise)',
      // Empty, or one address.
      allowedPattern: '^$|^[^\\s@]+@[^\\s@]+\\.[^\\s@]+$',
      constraintDescription: 'must be empty or one e-mail address',
    });
    const key = new kms.Key(this, 'AlarmTopicKey', {
      description: 'Encrypts the Lekiwi Heartbeat alarm topic',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // CloudWatch alarms of this account publish to the encrypted topic.
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    );
    const topic = new sns.Topic(this, 'AlarmTopic', { masterKey: key, enforceSSL: true });
    const hasEmail = new CfnCondition(this, 'HasAlarmEmail', {
      expression: Fn.conditionNot(Fn.conditionEquals(email.valueAsString, '')),
    });
    const subscription = new sns.CfnSubscription(this, 'AlarmEmailSubscription', {
      topicArn: topic.topicArn,
      protocol: 'email',
      endpoint: email.valueAsString,
    });
    subscription.cfnOptions.condition = hasEmail;
    new CfnOutput(this, 'AlarmTopicArn', { value: topic.topicArn, description: 'Every alarm of this stage notifies this topic' });
    return topic;
  }
}

/** A table's keys (schemas/tables.ts) as the Table construct takes them. */
function tableKeys(table: TableKeys): Pick<dynamodb.TableProps, 'partitionKey' | 'sortKey'> {
  const attribute = ({ name, type }: TableKeys['partitionKey']): dynamodb.Attribute => ({
    name,
    type: type === 'S' ? dynamodb.AttributeType.STRING : dynamodb.AttributeType.NUMBER,
  });
  return { partitionKey: attribute(table.partitionKey), sortKey: attribute(table.sortKey) };
}
