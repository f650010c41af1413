import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Arn, ArnFormat, CfnOutput, CustomResource, Duration, Lazy, RemovalPolicy, Stack, Token, Validations, type StackProps } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpUserPoolAuthorizer, WebSocketLambdaAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration, WebSocketLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as cognito from 'aws-cdk-lib/aws-cognito';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as rds from 'aws-cdk-lib/aws-rds';
import * as route53 from 'aws-cdk-lib/aws-route53';
import * as route53Targets from 'aws-cdk-lib/aws-route53-targets';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';
import { AppFunction, POWERTOOLS_METRICS_NAMESPACE, REPO_ROOT, type AppFunctionVpcPlacement } from '../constructs/app-function.js';
import { DashboardHosting, type DashboardHostingProps } from '../constructs/dashboard-hosting.js';
import { IotDataEndpoint } from '../constructs/iot-data-endpoint.js';
import { DeploymentChangeBroadcast, grantDeploymentStore, grantJobsControl, grantReleaseReads, thingArnPrefix } from '../constructs/deployments.js';
import { HEAD_RECORD_PATTERNS, PROJECTED_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { CLOUD_COMMAND_TOPICS } from '../../schemas/topics.js';
import { DB_NAME, DB_PORT, DB_USER } from './stateful-stack.js';
import { HTTP_ROUTE_KEYS, splitRouteKey } from '../../schemas/routes.js';
import { CLIENT_ACTIONS, type ClientAction } from '../../schemas/api.js';
import { nagRegionAccount } from '../constructs/nag-arn.js';

export const MIGRATIONS_DIR = path.join(REPO_ROOT, 'functions', 'migrations');
export const WEBSOCKET_STAGE = 'live';
/** How far behind the stream the projector may fall before its alarm rings (the stream keeps records 24 hours). */
export const PROJECTOR_MAX_ITERATOR_AGE = Duration.minutes(5);

/** The routes of the one `http-api` Lambda (schemas/routes.ts; the paths are the legacy v2 API's). */
export const HTTP_ROUTES: ReadonlyArray<{ method: apigwv2.HttpMethod; path: string }> = HTTP_ROUTE_KEYS.map((key) => {
  const { method, path } = splitRouteKey(key);
  return { method: apigwv2.HttpMethod[method], path };
});

export interface ApiStackProps extends StackProps {
  readonly eventLog: dynamodb.ITable;
  readonly connections: dynamodb.ITable;
  readonly vpc: ec2.IVpc;
  readonly dbSubnets: ec2.SubnetSelection;
  readonly dbClientSecurityGroup: ec2.ISecurityGroup;
  readonly proxy: rds.IDatabaseProxy;
  readonly projectorDlq: sqs.IQueue;
  readonly broadcasterDlq: sqs.IQueue;
  /** Deployments (issue 12): the http-api creates, lists and acts on them, reading releases from the bucket. */
  readonly deployments: dynamodb.ITable;
  readonly artifactBucket: s3.IBucket;
  readonly userPool: cognito.UserPool;
  readonly userPoolDomain: cognito.IUserPoolDomain;
  /** Extra origins of the dashboard (OAuth callbacks, CORS); the distribution's own origin needs no CORS. */
  readonly dashboardOrigins: string[];
  /** The dashboard's hosting (infra/constructs/dashboard-hosting.ts): stage name, bundle, custom domain. */
  readonly dashboard: Pick<DashboardHostingProps, 'stage' | 'bundleDir' | 'customDomain'>;
  /** How long a robot may stay offline with a teleoperation session open before it is closed (default 120 s). */
  readonly teleoperationOfflineTimeoutSeconds?: number;
}

/**
 * The stateless cloud: the HTTP API (/api/v2), the WebSocket API with its $connect authorizer, the three consumers of
 * the event log stream (projector, broadcaster, coalescer), and the migration step that brings the read-model schema up to date on deploy.
 */
/** Filtering in the event source mapping drops what the consumers ignore before Lambda is invoked, at no cost. */
const PROJECTED_RECORDS = PROJECTED_RECORD_PATTERNS.map((pattern) => lambda.FilterCriteria.filter(pattern as Record<string, unknown>));

export class ApiStack extends Stack {
  readonly httpApi: apigwv2.HttpApi;
  readonly httpStage: apigwv2.HttpStage;
  readonly webSocketApi: apigwv2.WebSocketApi;
  readonly webSocketStage: apigwv2.WebSocketStage;
  readonly dashboard: DashboardHosting;
  readonly functions: Record<string, lambda.IFunction> = {};

  constructor(scope: Construct, id: string, props: ApiStackProps) {
    super(scope, id, props);

    const inVpc: AppFunctionVpcPlacement = {
      vpc: props.vpc,
      subnets: props.dbSubnets,
      securityGroups: [props.dbClientSecurityGroup],
    };
    const dbEnv = {
      DB_HOST: props.proxy.endpoint,
      DB_PORT: String(DB_PORT),
      DB_NAME,
      DB_USER,
      DB_IAM_AUTH: 'true',
    };
    const withDatabase = (fn: lambda.IFunction): void => {
      props.proxy.grantConnect(fn, DB_USER);
    };
    const connectionsEnv = { CONNECTIONS_TABLE: props.connections.tableName };
    const add = (id: string, fn: AppFunction): lambda.IFunction => {
      this.functions[id] = fn.fn;
      return fn.fn;
    };

    // ---- WebSocket API (created first: the broadcaster needs its callback URL).
    const wsAuthorizerFn = add(
      'WsAuthorizer',
      new AppFunction(this, 'WsAuthorizer', {
        handler: 'ws-authorizer',
        description: 'Verifies the Cognito JWT in ?token= on WebSocket $connect',
        environment: {
          JWT_ISSUER: props.userPool.userPoolProviderUrl,
          // The dashboard's app client is created with the dashboard, below (after the APIs it fronts).
          JWT_AUDIENCE: Lazy.string({ produce: () => this.dashboard.client.userPoolClientId }),
        },
      }),
    );
    const wsFunction = (id: string, handler: string, description: string): lambda.IFunction => {
      const fn = add(id, new AppFunction(this, id, { handler, description, environment: connectionsEnv }));
      props.connections.grantReadWriteData(fn);
      return fn;
    };
    const wsConnect = wsFunction('WsConnect', 'ws-connect', 'Records a new WebSocket connection');
    const wsDisconnect = wsFunction('WsDisconnect', 'ws-disconnect', 'Removes a closed WebSocket connection');
    const wsSubscribe = wsFunction('WsSubscribe', 'ws-subscribe', 'Subscribes a connection to robots');
    const wsUnsubscribe = wsFunction('WsUnsubscribe', 'ws-unsubscribe', 'Unsubscribes a connection from robots');

    this.webSocketApi = new apigwv2.WebSocketApi(this, 'WebSocketApi', {
      apiName: `${this.stackName}-live`,
      description: 'Lekiwi Heartbeat live fleet updates',
      routeSelectionExpression: '$request.body.action',
      connectRouteOptions: {
        integration: new WebSocketLambdaIntegration('Connect', wsConnect),
        authorizer: new WebSocketLambdaAuthorizer('ConnectAuthorizer', wsAuthorizerFn, {
          identitySource: ['route.request.querystring.token'],
        }),
      },
      disconnectRouteOptions: { integration: new WebSocketLambdaIntegration('Disconnect', wsDisconnect) },
    });
    // One route per client action of schemas/api.ts: a new action does not compile until it has its function here.
    const actionFunctions: Record<ClientAction, lambda.IFunction> = { subscribe: wsSubscribe, unsubscribe: wsUnsubscribe };
    for (const action of CLIENT_ACTIONS) {
      const id = `${action[0]!.toUpperCase()}${action.slice(1)}`;
      this.webSocketApi.addRoute(action, {
        integration: new WebSocketLambdaIntegration(id, actionFunctions[action]),
        returnResponse: true,
      });
    }
    // Any other action: without $default API Gateway answers a bare "Forbidden"; this one lists the actions.
    const wsDefault = add('WsDefault', new AppFunction(this, 'WsDefault', { handler: 'ws-default', description: 'Answers an unknown WebSocket action with the actions that exist' }));
    this.webSocketApi.addRoute('$default', {
      integration: new WebSocketLambdaIntegration('UnknownAction', wsDefault),
      returnResponse: true,
    });
    // WebSocket APIs authenticate once, at $connect; API Gateway has no authorizer on the other routes.
    Validations.of(this.webSocketApi).acknowledge({
      id: 'AwsSolutions-APIG4',
      reason:
        'API Gateway WebSocket APIs only support authorizers on $connect; $disconnect, subscribe and unsubscribe run on a connection that $connect already authorized.',
    });

    this.webSocketStage = new apigwv2.WebSocketStage(this, 'WebSocketStage', {
      webSocketApi: this.webSocketApi,
      stageName: WEBSOCKET_STAGE,
      autoDeploy: true,
      throttle: { rateLimit: 100, burstLimit: 200 },
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup('WebSocketAccessLogs')),
        format: apigw.AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            connectionId: '$context.connectionId',
            routeKey: '$context.routeKey',
            eventType: '$context.eventType',
            status: '$context.status',
            requestTime: '$context.requestTime',
            sourceIp: '$context.identity.sourceIp',
            integrationLatency: '$context.integrationLatency',
            authorizerError: '$context.authorizer.error',
            error: '$context.error.message',
          }),
        ),
      },
    });
    this.apiGatewayLoggingRole();

    // ---- Stream consumers. One shard at a time per robot partition (parallelizationFactor 1): order matters.
    const projector = add(
      'StreamProjector',
      new AppFunction(this, 'StreamProjector', {
        handler: 'stream-projector',
        description: 'Projects the event log stream into the PostgreSQL read models',
        // EVENT_LOG_TABLE: the events the stream lost are read back from the log (through the VPC's DynamoDB
        // gateway endpoint) before the robot's later events are projected.
        // DEAD_LETTER_QUEUE_URL: records that cannot be parsed are set aside there, with the reason.
        environment: { ...dbEnv, EVENT_LOG_TABLE: props.eventLog.tableName, DEAD_LETTER_QUEUE_URL: props.projectorDlq.queueUrl },
        vpcPlacement: inVpc,
        timeout: Duration.seconds(60),
      }),
    );
    withDatabase(projector);
    props.eventLog.grantReadData(projector);
    props.projectorDlq.grantSendMessages(projector);
    const projectorSource = new DynamoEventSource(props.eventLog, {
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      // One transaction per batch: 1,000 records amortise the round trips and the commit (bench:projector).
      batchSize: 1000,
      filters: PROJECTED_RECORDS,
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      // The read model never skips: a failed batch (the database is down, a robot waits on an event the log cannot
      // give yet) is retried until it succeeds, bounded only by the stream's 24-hour retention (maximum record age
      // -1, set below). The projector itself sets aside the records that cannot be parsed; the on-failure queue
      // only receives what expired from the stream while it waited, and the IteratorAge alarm rings long before.
      retryAttempts: -1,
      parallelizationFactor: 1,
      onFailure: new SqsDlq(props.projectorDlq),
    });
    projector.addEventSource(projectorSource);
    // The L2 only takes a maximum record age from 60 s to 7 days; -1 (DynamoDB's own retention) is set on the L1.
    const projectorMapping = projector.node.children.find((child) => child instanceof lambda.EventSourceMapping);
    (projectorMapping?.node.defaultChild as lambda.CfnEventSourceMapping | undefined)?.addPropertyOverride('MaximumRecordAgeInSeconds', -1);
    projector
      .metric('IteratorAge', { period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM })
      .createAlarm(this, 'StreamProjectorIteratorAge', {
        alarmDescription:
          'stream-projector is more than 5 minutes behind the event log stream (the read-model database is down, or a robot waits on an event the log cannot give); records expire from the stream after 24 hours',
        threshold: PROJECTOR_MAX_ITERATOR_AGE.toMilliseconds(),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    new cloudwatch.Metric({
      namespace: POWERTOOLS_METRICS_NAMESPACE,
      metricName: 'StreamRecordsSetAside',
      dimensionsMap: { service: 'stream-projector' },
      period: Duration.minutes(1),
      statistic: cloudwatch.Stats.SUM,
    }).createAlarm(this, 'StreamProjectorRecordsSetAside', {
      alarmDescription:
        'stream-projector set aside event log stream records it could not parse (the reasons are in its log, message "Stream record set aside")',
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const broadcaster = add(
      'StreamBroadcaster',
      new AppFunction(this, 'StreamBroadcaster', {
        handler: 'stream-broadcaster',
        description: 'Pushes event log records to the WebSocket connections subscribed to the robot',
        environment: { ...connectionsEnv, WS_ENDPOINT: this.webSocketStage.callbackUrl },
        timeout: Duration.seconds(30),
      }),
    );
    props.connections.grantReadWriteData(broadcaster);
    this.webSocketApi.grantManageConnections(broadcaster);
    const webSocketApiId = this.getLogicalId(this.webSocketApi.node.defaultChild as apigwv2.CfnApi);
    Validations.of(broadcaster).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:${nagRegionAccount(this)}:<${webSocketApiId}>/*/*/@connections/*]`,
      reason:
        'PostToConnection/DeleteConnection address connection ids that exist only at run time; the grant is limited to this WebSocket API.',
    });
    broadcaster.addEventSource(
      new DynamoEventSource(props.eventLog, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        filters: PROJECTED_RECORDS,
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        // A live update is only worth sending while it is fresh: fewer retries and a shorter age than the
        // projector, so a stuck batch does not hold back the live view for long. The dashboard reloads state
        // from the HTTP API when it reconnects.
        retryAttempts: 2,
        maxRecordAge: Duration.minutes(5),
        parallelizationFactor: 1,
        onFailure: new SqsDlq(props.broadcasterDlq),
      }),
    );

    // Coalesced telemetry (`RobotsUpdated`) for connections that asked for a rate: every head write, gathered for a
    // second (or until the batch is full), one round of pushes per batch.
    const coalescer = add(
      'StreamCoalescer',
      new AppFunction(this, 'StreamCoalescer', {
        handler: 'stream-coalescer',
        description: 'Pushes the latest views of changed robots, at most once a second, to WebSocket connections with a telemetry rate',
        environment: { ...connectionsEnv, WS_ENDPOINT: this.webSocketStage.callbackUrl },
        timeout: Duration.seconds(30),
      }),
    );
    // Look up subscriptions; forget a gone connection (read it, delete its items).
    props.connections.grant(coalescer, 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem');
    this.webSocketApi.grantManageConnections(coalescer);
    Validations.of(coalescer).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:${nagRegionAccount(this)}:<${webSocketApiId}>/*/*/@connections/*]`,
      reason:
        'PostToConnection/DeleteConnection address connection ids that exist only at run time; the grant is limited to this WebSocket API.',
    });
    coalescer.addEventSource(
      new DynamoEventSource(props.eventLog, {
        // Views are only worth pushing fresh: a new mapping starts at the stream's tip, not 24 hours back.
        startingPosition: lambda.StartingPosition.LATEST,
        batchSize: 10_000,
        maxBatchingWindow: Duration.seconds(1),
        filters: HEAD_RECORD_PATTERNS.map((pattern) => lambda.FilterCriteria.filter(pattern as Record<string, unknown>)),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        retryAttempts: 2,
        // The shortest age Lambda allows: a round a minute late is replaced by the next one anyway.
        maxRecordAge: Duration.minutes(1),
        // One batch per shard at a time, so a connection gets at most one round per shard and batch.
        parallelizationFactor: 1,
        onFailure: new SqsDlq(props.broadcasterDlq),
      }),
    );

    // Deployments (issue 12): each committed change of a deployment's record → DeploymentChanged to `*`.
    this.functions['StreamDeploymentChanges'] = new DeploymentChangeBroadcast(this, 'DeploymentChangeBroadcast', {
      deployments: props.deployments,
      connections: props.connections,
      webSocketApi: this.webSocketApi,
      webSocketStage: this.webSocketStage,
      dlq: props.broadcasterDlq,
    }).fn;

    // ---- HTTP API: one Lambda for every /api/v2 route, a Cognito JWT authorizer on each of them.
    const iotDataEndpoint = this.iotDataPlaneInVpc(props);
    const httpApiFn = add(
      'HttpApi',
      new AppFunction(this, 'HttpApiHandler', {
        handler: 'http-api',
        description: 'The /api/v2 HTTP API',
        environment: {
          ...dbEnv,
          EVENT_LOG_TABLE: props.eventLog.tableName,
          IOT_DATA_ENDPOINT: iotDataEndpoint,
          DEPLOYMENTS_TABLE: props.deployments.tableName,
          ARTIFACT_BUCKET: props.artifactBucket.bucketName,
          THING_ARN_PREFIX: thingArnPrefix(this),
        },
        vpcPlacement: inVpc,
        // API Gateway gives up on the integration after 30 s.
        timeout: Duration.seconds(29),
      }),
    );
    withDatabase(httpApiFn);
    props.eventLog.grantReadWriteData(httpApiFn);
    // /api/v2/deployments: the record, the release it installs, and IoT Jobs (POST opens batch 0, …/cancel cancels
    // the open job); S3 through the VPC's gateway endpoint, IoT's control plane through the endpoint below.
    grantDeploymentStore(props.deployments, httpApiFn);
    grantReleaseReads(props.artifactBucket, httpApiFn, ['releases/*', 'objects/*']);
    grantJobsControl(httpApiFn);
    this.iotControlPlaneInVpc(props);
    // POST /discover: the commands the cloud sends robots, and nothing else (a robot's own topics stay its own).
    const commandTopicArns = CLOUD_COMMAND_TOPICS.map((topic) =>
      Arn.format({ service: 'iot', resource: 'topic', resourceName: topic, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }, this),
    );
    httpApiFn.addToRolePolicy(new iam.PolicyStatement({ actions: ['iot:Publish'], resources: commandTopicArns }));
    for (const topic of CLOUD_COMMAND_TOPICS) {
      Validations.of(httpApiFn).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:${nagRegionAccount(this)}:topic/${topic}]`,
        reason:
          'The command goes to every robot online, so the thing name in the topic is a wildcard; the grant is limited to this one command topic.',
      });
    }

    this.httpApi = new apigwv2.HttpApi(this, 'HttpApi', {
      apiName: `${this.stackName}-http`,
      description: 'Lekiwi Heartbeat /api/v2',
      createDefaultStage: false,
      // The dashboard calls /api/v2 on its own origin (its distribution forwards it here): CORS only for the extra
      // origins configured with dashboardOrigins, and none at all without them.
      corsPreflight:
        props.dashboardOrigins.length === 0
          ? undefined
          : {
              allowOrigins: props.dashboardOrigins,
              allowMethods: [apigwv2.CorsHttpMethod.GET, apigwv2.CorsHttpMethod.POST, apigwv2.CorsHttpMethod.OPTIONS],
              allowHeaders: ['authorization', 'content-type', 'idempotency-key'],
              maxAge: Duration.hours(1),
            },
    });
    // ---- The dashboard: its distribution serves /api/v2 and names the WebSocket API in its CSP; its app client is
    // what both APIs' authorizers trust.
    this.dashboard = new DashboardHosting(this, 'Dashboard', {
      ...props.dashboard,
      httpApi: this.httpApi,
      webSocketApi: this.webSocketApi,
      webSocketStage: this.webSocketStage,
      userPool: props.userPool,
      userPoolDomain: props.userPoolDomain,
      extraOrigins: props.dashboardOrigins,
    });
    const authorizer = new HttpUserPoolAuthorizer('CognitoAuthorizer', props.userPool, {
      userPoolClients: [this.dashboard.client],
    });
    const integration = new HttpLambdaIntegration('HttpApiIntegration', httpApiFn);
    for (const route of HTTP_ROUTES) {
      this.httpApi.addRoutes({ path: route.path, methods: [route.method], integration, authorizer });
    }
    this.httpStage = this.httpApi.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: 50, burstLimit: 100 },
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup('HttpAccessLogs')),
        format: apigw.AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            routeKey: '$context.routeKey',
            status: '$context.status',
            requestTime: '$context.requestTime',
            sourceIp: '$context.identity.sourceIp',
            userAgent: '$context.identity.userAgent',
            responseLength: '$context.responseLength',
            integrationLatency: '$context.integrationLatency',
            authorizerError: '$context.authorizer.error',
            error: '$context.error.message',
          }),
        ),
      },
    });

    // ---- Migrations: applied by a custom resource whose properties carry a hash of the SQL files, so
    // CloudFormation calls it again exactly when a migration was added or changed.
    const migrate = add(
      'DbMigrate',
      new AppFunction(this, 'DbMigrate', {
        handler: 'db-migrate',
        description: 'Applies functions/migrations/*.sql to the read-model database (CloudFormation custom resource)',
        environment: { ...dbEnv, MIGRATIONS_DIR: '/var/task/migrations' },
        vpcPlacement: inVpc,
        timeout: Duration.minutes(5),
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir: string, outputDir: string) => [
            `mkdir -p "${outputDir}/migrations"`,
            `cp "${inputDir}/functions/migrations/"*.sql "${outputDir}/migrations/"`,
          ],
        },
      }),
    );
    withDatabase(migrate);
    const migrationProvider = new cr.Provider(this, 'MigrationProvider', {
      onEventHandler: migrate,
      logGroup: new logs.LogGroup(this, 'MigrationProviderLogs', {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      }),
    });
    Validations.of(migrationProvider).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason: 'The custom resource framework Lambda (owned by aws-cdk-lib) only writes its own logs with this AWS-maintained policy.',
    });
    Validations.of(migrationProvider).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${this.getLogicalId(migrate.node.defaultChild as lambda.CfnFunction)}.Arn>:*]`,
      reason: 'The custom resource framework may invoke any version of the migration function it was given; the grant names that one function.',
    });
    const migrations = new CustomResource(this, 'Migrations', {
      serviceToken: migrationProvider.serviceToken,
      resourceType: 'Custom::HeartbeatMigrations',
      properties: { migrationsHash: migrationsHash() },
    });
    // The read-model code goes live only after the schema it expects: CloudFormation creates or updates these
    // functions (and the projector's event source mapping) once the migrations succeeded, and a failed migration
    // stops the deploy before they change.
    projector.node.addDependency(migrations);
    httpApiFn.node.addDependency(migrations);

    // ---- Teleoperation offline timeout (issue 9): every minute, sessions of robots offline for longer than
    // TELEOPERATION_OFFLINE_TIMEOUT_SECONDS are closed as robot-offline, through the event log's command path.
    const teleoperationExpiry = add(
      'TeleoperationExpiry',
      new AppFunction(this, 'TeleoperationExpiry', {
        handler: 'teleoperation-expiry',
        description: 'Closes the teleoperation sessions of robots offline past the timeout (scheduled every minute)',
        environment: {
          ...dbEnv,
          EVENT_LOG_TABLE: props.eventLog.tableName,
          // Unset, the function's default (120 s) applies.
          ...(props.teleoperationOfflineTimeoutSeconds === undefined
            ? {}
            : { TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: String(props.teleoperationOfflineTimeoutSeconds) }),
        },
        vpcPlacement: inVpc,
        timeout: Duration.seconds(50),
      }),
    );
    withDatabase(teleoperationExpiry);
    props.eventLog.grantReadWriteData(teleoperationExpiry);
    teleoperationExpiry.node.addDependency(migrations);
    new events.Rule(this, 'TeleoperationExpirySchedule', {
      description: 'Runs TeleoperationExpiry every minute',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      // A missed minute is made up by the next: no retries, no piling up.
      targets: [new eventsTargets.LambdaFunction(teleoperationExpiry, { retryAttempts: 0 })],
    });

    new CfnOutput(this, 'HttpApiUrl', { value: this.httpStage.url });
    new CfnOutput(this, 'WebSocketUrl', { value: this.webSocketStage.url });
  }

  /**
   * The account's IoT data endpoint (DescribeEndpoint, `iot:Data-ATS`), reachable from the isolated subnets: the
   * http-api runs in the VPC for PostgreSQL and has no route to the internet. IoT Core's interface endpoint
   * (`iot.data`) does not create DNS records itself, so a private hosted zone named after the account's endpoint
   * points it at the interface endpoint, for the functions in this VPC only. Returns the endpoint's host name.
   */
  private iotDataPlaneInVpc(props: ApiStackProps): string {
    const host = new IotDataEndpoint(this, 'IotDataEndpoint').host;

    const endpoint = new ec2.InterfaceVpcEndpoint(this, 'IotDataVpcEndpoint', {
      vpc: props.vpc,
      service: ec2.InterfaceVpcEndpointAwsService.IOT_CORE,
      subnets: props.dbSubnets,
      // IoT Core refuses private DNS on this endpoint: the zone below does it.
      privateDnsEnabled: false,
      open: false,
      // Not every availability zone offers iot.data, and CloudFormation fails the endpoint if a subnet is in one that
      // does not: only subnets in zones that offer it (DescribeVpcEndpointServices at synth, kept in cdk.context.json).
      // That needs the account and region, which `cdk deploy` always has; an env-agnostic synth (no credentials)
      // cannot know the zones, so it keeps one subnet per zone.
      lookupSupportedAzs: !Token.isUnresolved(this.account) && !Token.isUnresolved(this.region),
    });
    endpoint.connections.allowDefaultPortFrom(props.dbClientSecurityGroup, 'HTTPS publish from the VPC Lambda functions');
    const zone = new route53.PrivateHostedZone(this, 'IotDataZone', { zoneName: host, vpc: props.vpc });
    new route53.ARecord(this, 'IotDataRecord', {
      zone,
      target: route53.RecordTarget.fromAlias(new route53Targets.InterfaceVpcEndpointTarget(endpoint)),
    });
    return host;
  }

  /**
   * IoT's control plane (`iot.<region>.amazonaws.com`: CreateJob, CancelJob…) from the isolated subnets, for the
   * http-api's deployment actions: an `iot.api` interface endpoint, and, as for the data plane, a private zone that
   * points the control plane's host name at it (the data endpoint's own zone is more specific and still wins for it).
   */
  private iotControlPlaneInVpc(props: ApiStackProps): void {
    const service = new ec2.InterfaceVpcEndpointAwsService('iot.api');
    const endpoint = new ec2.InterfaceVpcEndpoint(this, 'IotControlVpcEndpoint', {
      vpc: props.vpc,
      service,
      subnets: props.dbSubnets,
      privateDnsEnabled: false,
      open: false,
      lookupSupportedAzs: !Token.isUnresolved(this.account) && !Token.isUnresolved(this.region),
    });
    endpoint.connections.allowDefaultPortFrom(props.dbClientSecurityGroup, 'HTTPS to the IoT control plane from the VPC Lambda functions');
    const zone = new route53.PrivateHostedZone(this, 'IotControlZone', { zoneName: `iot.${this.region}.${this.urlSuffix}`, vpc: props.vpc });
    new route53.ARecord(this, 'IotControlRecord', {
      zone,
      target: route53.RecordTarget.fromAlias(new route53Targets.InterfaceVpcEndpointTarget(endpoint)),
    });
  }

  private accessLogGroup(id: string): logs.LogGroup {
    return new logs.LogGroup(this, id, { retention: logs.RetentionDays.THREE_MONTHS, removalPolicy: RemovalPolicy.DESTROY });
  }

  /**
   * WebSocket access logging needs API Gateway's account-level CloudWatch role (HTTP APIs do not). It is one
   * setting per account and region; setting it again from another stage of this app is harmless.
   */
  private apiGatewayLoggingRole(): void {
    const role = new iam.Role(this, 'ApiGatewayCloudWatchRole', {
      assumedBy: new iam.ServicePrincipal('apigateway.amazonaws.com'),
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonAPIGatewayPushToCloudWatchLogs'),
      ],
    });
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      reason: 'AmazonAPIGatewayPushToCloudWatchLogs is the AWS-maintained policy API Gateway needs to write access logs.',
    });
    const account = new apigw.CfnAccount(this, 'ApiGatewayAccount', { cloudWatchRoleArn: role.roleArn });
    // Keep the account setting when the stack goes: other stacks in the account (another stage) may rely on it.
    account.applyRemovalPolicy(RemovalPolicy.RETAIN);
    // And the role it names: the setting of the stage deployed last survives that stage's removal, and must still
    // point at a role that exists.
    role.applyRemovalPolicy(RemovalPolicy.RETAIN);
    this.webSocketStage.node.addDependency(account);
  }
}

/** A hash of the migration files' names and contents, in name order. */
export function migrationsHash(dir: string = MIGRATIONS_DIR): string {
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.sql')).sort()) {
    hash.update(file).update('\0').update(readFileSync(path.join(dir, file))).update('\0');
  }
  return hash.digest('hex');
}
