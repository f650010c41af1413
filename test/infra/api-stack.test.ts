import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addApiStack, addStatefulStack } from '../../infra/heartbeat.js';
import { migrationsHash } from '../../infra/stacks/api-stack.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import { BUILD_TIMEOUT, STAGE, flatten, functionsByHandler, newApp } from './helpers.js';

const VPC_HANDLERS = ['http-api', 'stream-projector', 'db-migrate', 'teleoperation-expiry'];
const OUTSIDE_VPC_HANDLERS = [
  'stream-broadcaster',
  'stream-coalescer',
  'stream-deployment-changes',
  'ws-authorizer',
  'ws-connect',
  'ws-disconnect',
  'ws-subscribe',
  'ws-unsubscribe',
  'ws-default',
];
/** The handler's route table: API Gateway must declare exactly these, or a route answers 404 in AWS but not locally. */
const HTTP_ROUTE_KEYS = ROUTE_KEYS;

describe('ApiStack', () => {
  let template: Template;
  let fns: ReturnType<typeof functionsByHandler>;

  beforeAll(() => {
    const app = newApp();
    const stateful = addStatefulStack(app, STAGE);
    template = Template.fromStack(addApiStack(app, STAGE, stateful));
    fns = functionsByHandler(template);
  }, BUILD_TIMEOUT);

  const fn = (handler: string) => {
    const found = fns.get(handler);
    if (!found) throw new Error(`no function for ${handler}`);
    return found;
  };
  const env = (handler: string): Record<string, unknown> => fn(handler).properties.Environment.Variables;

  describe('functions', () => {
    it('are all Node.js 24 on arm64 with active tracing, a log group and the Powertools environment', () => {
      expect([...fns.keys()].sort()).toEqual([...VPC_HANDLERS, ...OUTSIDE_VPC_HANDLERS].sort());
      for (const [name, { properties }] of fns) {
        expect(properties.Architectures, name).toEqual(['arm64']);
        expect(properties.Runtime, name).toBe('nodejs24.x');
        expect(properties.Handler, name).toBe('index.handler');
        expect(properties.TracingConfig, name).toEqual({ Mode: 'Active' });
        expect(properties.LoggingConfig?.LogGroup, name).toBeDefined();
        expect(properties.Environment.Variables, name).toMatchObject({
          POWERTOOLS_SERVICE_NAME: name,
          POWERTOOLS_METRICS_NAMESPACE: 'LekiwiHeartbeat',
          LOG_LEVEL: 'INFO',
        });
      }
    });

    it('put only the PostgreSQL clients in the VPC', () => {
      for (const name of VPC_HANDLERS) {
        expect(fn(name).properties.VpcConfig, name).toMatchObject({
          SubnetIds: expect.any(Array),
          SecurityGroupIds: [expect.anything()],
        });
      }
      for (const name of OUTSIDE_VPC_HANDLERS) expect(fn(name).properties.VpcConfig, name).toBeUndefined();
    });

    it('give the PostgreSQL clients the proxy endpoint, IAM auth and rds-db:connect as heartbeat_admin', () => {
      for (const name of VPC_HANDLERS) {
        expect(env(name), name).toMatchObject({
          DB_HOST: expect.anything(),
          DB_PORT: '5432',
          DB_NAME: 'heartbeat',
          DB_USER: 'heartbeat_admin',
          DB_IAM_AUTH: 'true',
        });
        expect(flatten(env(name).DB_HOST)).toMatch(/Proxy.*Endpoint/);
        const role = fn(name).properties.Role['Fn::GetAtt'][0] as string;
        const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: role }] } });
        const connect = Object.values(policies)
          .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string; Resource: unknown }[])
          .filter((s) => s.Action === 'rds-db:connect');
        expect(connect, name).toHaveLength(1);
        expect(flatten(connect[0]!.Resource)).toMatch(/:dbuser:.*\/heartbeat_admin$/);
      }
      expect(env('http-api').EVENT_LOG_TABLE).toBeDefined();
    });

    it('give the WebSocket handlers the connections table and the authorizer the Cognito issuer and audience', () => {
      for (const name of ['ws-connect', 'ws-disconnect', 'ws-subscribe', 'ws-unsubscribe', 'stream-broadcaster', 'stream-coalescer']) {
        expect(env(name).CONNECTIONS_TABLE, name).toBeDefined();
      }
      expect(flatten(env('ws-authorizer').JWT_ISSUER)).toMatch(/ProviderURL/);
      expect(flatten(env('ws-authorizer').JWT_AUDIENCE)).toMatch(/DashboardClient/);
    });
  });

  describe('stream consumers', () => {
    const mappingOf = (handler: string) => {
      const mappings = template.findResources('AWS::Lambda::EventSourceMapping', {
        Properties: { FunctionName: { Ref: fn(handler).logicalId } },
      });
      expect(Object.keys(mappings), handler).toHaveLength(1);
      return Object.values(mappings)[0]!.Properties as Record<string, any>;
    };

    it('project the event log stream with bisect and partial batch failures, retrying until the stream expires the record', () => {
      const destination = new Capture();
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        FunctionName: { Ref: fn('stream-projector').logicalId },
        EventSourceArn: Match.anyValue(),
        StartingPosition: 'TRIM_HORIZON',
        BatchSize: 1000,
        BisectBatchOnFunctionError: true,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        // -1 and -1: retried forever, up to DynamoDB's 24-hour stream retention; only what expires reaches the DLQ.
        MaximumRetryAttempts: -1,
        MaximumRecordAgeInSeconds: -1,
        ParallelizationFactor: 1,
        DestinationConfig: { OnFailure: { Destination: destination } },
      });
      expect(flatten(destination.asObject())).toMatch(/ProjectorDlq.*Arn/);
      expect(flatten(mappingOf('stream-projector').EventSourceArn)).toMatch(/EventLog.*StreamArn/);
    });

    it('let the projector read the event log (for events the stream lost) and write nothing to it', () => {
      expect(flatten(env('stream-projector').EVENT_LOG_TABLE)).toMatch(/EventLog/);
      const role = fn('stream-projector').properties.Role['Fn::GetAtt'][0] as string;
      const statements = Object.values(template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: role }] } })).flatMap(
        (p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[],
      );
      const onTable = statements.filter((s) => [s.Resource].flat().some((r) => /EventLog/.test(flatten(r)) && !/Stream/.test(flatten(r))));
      expect(onTable.flatMap((s) => [s.Action].flat())).toEqual(expect.arrayContaining(['dynamodb:Query', 'dynamodb:GetItem']));
      const dynamoActions = statements.flatMap((s) => [s.Action].flat()).filter((action) => action.startsWith('dynamodb:'));
      expect(dynamoActions.filter((action) => /Put|Update|Delete|Write/.test(action))).toEqual([]);
    });

    it('alarm when the projector falls 5 minutes behind the stream, and when it sets a record aside', () => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'IteratorAge',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: fn('stream-projector').logicalId } }],
        Statistic: 'Maximum',
        Threshold: 300_000,
        ComparisonOperator: 'GreaterThanThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'LekiwiHeartbeat',
        MetricName: 'StreamRecordsSetAside',
        Dimensions: [{ Name: 'service', Value: 'stream-projector' }],
        Statistic: 'Sum',
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
      });
    });

    it('skip eventId markers and heads without a new sample before invoking either consumer', () => {
      for (const consumer of ['stream-projector', 'stream-broadcaster']) {
        const patterns = (mappingOf(consumer).FilterCriteria as { Filters: { Pattern: string }[] }).Filters.map((f) =>
          JSON.parse(f.Pattern),
        );
        expect(patterns).toEqual([
          { dynamodb: { NewImage: { kind: { S: ['event'] } } } },
          { dynamodb: { NewImage: { kind: { S: ['head'] }, telemetryChanged: { BOOL: [true] } } } },
        ]);
      }
    });

    it('broadcast from the same stream with their own DLQ and the same failure handling', () => {
      const mapping = mappingOf('stream-broadcaster');
      expect(mapping).toMatchObject({
        StartingPosition: 'TRIM_HORIZON',
        BisectBatchOnFunctionError: true,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        MaximumRetryAttempts: expect.any(Number),
        MaximumRecordAgeInSeconds: expect.any(Number),
        ParallelizationFactor: 1,
      });
      expect(flatten(mapping.EventSourceArn)).toMatch(/EventLog.*StreamArn/);
      expect(flatten(mapping.DestinationConfig.OnFailure.Destination)).toMatch(/BroadcasterDlq.*Arn/);
    });

    it('coalesce every head write of the stream, gathered for a second in large batches, with the broadcaster’s failure handling', () => {
      const mapping = mappingOf('stream-coalescer');
      expect(mapping).toMatchObject({
        StartingPosition: 'LATEST',
        BatchSize: 10_000,
        MaximumBatchingWindowInSeconds: 1,
        BisectBatchOnFunctionError: true,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        MaximumRetryAttempts: expect.any(Number),
        MaximumRecordAgeInSeconds: 60,
        ParallelizationFactor: 1,
      });
      expect(mapping.FilterCriteria.Filters.map((f: { Pattern: string }) => JSON.parse(f.Pattern))).toEqual([
        { dynamodb: { NewImage: { kind: { S: ['head'] } } } },
      ]);
      expect(flatten(mapping.EventSourceArn)).toMatch(/EventLog.*StreamArn/);
      expect(flatten(env('stream-coalescer').WS_ENDPOINT)).toMatch(/^https:\/\/<WebSocketApi\w+>\.execute-api\..*\/live$/);
    });

    it('let the coalescer read subscriptions, forget gone connections and post to connections, and nothing more', () => {
      const role = fn('stream-coalescer').properties.Role['Fn::GetAtt'][0] as string;
      const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
        (policy.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === role),
      );
      const statements = policies.flatMap((policy) => policy.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]);
      const actions = statements.flatMap((statement) => [statement.Action].flat());
      const dynamo = actions.filter((action) => action.startsWith('dynamodb:')).sort();
      expect(dynamo).toEqual(
        expect.arrayContaining(['dynamodb:BatchWriteItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:Query']),
      );
      // Beyond the connections table: only the event log's stream (the mapping's read), never a write to a table.
      const connectionsWrites = dynamo.filter((action) => /PutItem|UpdateItem/.test(action));
      expect(connectionsWrites).toEqual([]);
      expect(actions).toContain('execute-api:ManageConnections');
    });

    it('let the broadcaster post to WebSocket connections through the live stage callback URL', () => {
      expect(flatten(env('stream-broadcaster').WS_ENDPOINT)).toMatch(/^https:\/\/<WebSocketApi\w+>\.execute-api\..*\/live$/);
      const role = fn('stream-broadcaster').properties.Role['Fn::GetAtt'][0] as string;
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: role }],
        PolicyDocument: Match.objectLike({
          Statement: Match.arrayWith([Match.objectLike({ Action: 'execute-api:ManageConnections', Effect: 'Allow' })]),
        }),
      });
    });
  });

  describe('HTTP API', () => {
    it('has every /api/v2 route, each behind the Cognito JWT authorizer and integrated with http-api', () => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
        AuthorizerType: 'JWT',
        IdentitySource: ['$request.header.Authorization'],
        JwtConfiguration: { Audience: [Match.anyValue()], Issuer: Match.anyValue() },
      });
      const jwtAuthorizers = template.findResources('AWS::ApiGatewayV2::Authorizer', {
        Properties: { AuthorizerType: 'JWT' },
      });
      expect(Object.keys(jwtAuthorizers)).toHaveLength(1);
      const [jwtId, jwt] = Object.entries(jwtAuthorizers)[0]!;
      expect(flatten(jwt.Properties.JwtConfiguration.Issuer)).toMatch(/^https:\/\/cognito-idp\.<AWS::Region>\.amazonaws\.com\//);

      const routes = Object.values(template.findResources('AWS::ApiGatewayV2::Route'))
        .map((r) => r.Properties as Record<string, any>)
        .filter((r) => r.RouteKey.includes(' /'));
      expect(routes.map((r) => r.RouteKey).sort()).toEqual([...HTTP_ROUTE_KEYS].sort());
      for (const route of routes) {
        expect(route, route.RouteKey).toMatchObject({ AuthorizationType: 'JWT', AuthorizerId: { Ref: jwtId } });
      }
      template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
        IntegrationType: 'AWS_PROXY',
        IntegrationUri: { 'Fn::GetAtt': [fn('http-api').logicalId, 'Arn'] },
        PayloadFormatVersion: '2.0',
      });
    });

    it('allows the dashboard origin and logs access on the $default stage', () => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
        ProtocolType: 'HTTP',
        CorsConfiguration: Match.objectLike({
          AllowOrigins: ['https://dashboard.example.com'],
          AllowHeaders: Match.arrayWith(['authorization']),
        }),
      });
      template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        StageName: '$default',
        AutoDeploy: true,
        AccessLogSettings: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') },
      });
    });
  });

  describe('commands to robots (POST /discover)', () => {
    const statementsOf = (handler: string) => {
      const role = fn(handler).properties.Role['Fn::GetAtt'][0] as string;
      const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: role }] } });
      return Object.values(policies).flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: unknown; Resource: unknown }[]);
    };

    it('let only the http-api publish, and only the report-now and rotate-certificate commands to any robot', () => {
      // (The http-api's IoT Jobs grants for deployments are in deployments.test.ts.)
      const publish = statementsOf('http-api').filter((s) => JSON.stringify(s.Action).includes('iot:Publish'));
      expect(publish).toHaveLength(1);
      expect(publish[0]!.Action).toBe('iot:Publish');
      expect((publish[0]!.Resource as unknown[]).map(flatten)).toEqual([
        'arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:topic/cmd/heartbeat/*/report-now',
        'arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:topic/cmd/heartbeat/*/rotate-certificate',
      ]);
      for (const name of [...VPC_HANDLERS, ...OUTSIDE_VPC_HANDLERS].filter((n) => n !== 'http-api')) {
        expect(JSON.stringify(statementsOf(name)), name).not.toContain('iot:Publish');
      }
    });

    it('give the http-api the account ATS data endpoint from DescribeEndpoint', () => {
      const [describeId, describe] = Object.entries(template.findResources('Custom::IotDataEndpoint'))[0]!;
      expect(JSON.stringify(describe.Properties.Create)).toContain('iot:Data-ATS');
      expect(JSON.stringify(describe.Properties.Create)).toContain('describeEndpoint');
      expect(env('http-api').IOT_DATA_ENDPOINT).toEqual({ 'Fn::GetAtt': [describeId, 'endpointAddress'] });
    });

    it('reach IoT Core from the isolated subnets: iot.data interface endpoint, a private zone named after the endpoint', () => {
      // (The iot.api endpoint of the control plane, for deployments, is in deployments.test.ts.)
      const interfaces = Object.values(template.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Interface' } })).filter(
        (endpoint) => !flatten(endpoint.Properties.ServiceName).endsWith('.iot.api'),
      );
      expect(interfaces).toHaveLength(1);
      expect(interfaces[0]!.Properties.PrivateDnsEnabled).toBe(false);
      expect(flatten(interfaces[0]!.Properties.ServiceName)).toBe('com.amazonaws.<AWS::Region>.iot.data');
      const [describeId] = Object.keys(template.findResources('Custom::IotDataEndpoint'));
      template.hasResourceProperties('AWS::Route53::HostedZone', {
        Name: Match.objectLike({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [describeId, 'endpointAddress'] }, '.']] }),
        VPCs: [Match.objectLike({ VPCId: Match.anyValue() })],
      });
      template.hasResourceProperties('AWS::Route53::RecordSet', { Type: 'A', AliasTarget: Match.objectLike({ DNSName: Match.anyValue() }) });
      // HTTPS into the endpoint from the VPC Lambdas' security group only.
      template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', { FromPort: 443, ToPort: 443, SourceSecurityGroupId: Match.anyValue() });
    });
  });

  describe('WebSocket API', () => {
    it('routes on $request.body.action', () => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
        ProtocolType: 'WEBSOCKET',
        RouteSelectionExpression: '$request.body.action',
      });
    });

    it('authorizes $connect with the ws-authorizer Lambda on the token query parameter', () => {
      const authorizerId = new Capture();
      template.hasResourceProperties('AWS::ApiGatewayV2::Route', {
        RouteKey: '$connect',
        AuthorizationType: 'CUSTOM',
        AuthorizerId: { Ref: authorizerId },
      });
      const authorizer = template.findResources('AWS::ApiGatewayV2::Authorizer')[authorizerId.asString()];
      expect(authorizer?.Properties).toMatchObject({
        AuthorizerType: 'REQUEST',
        IdentitySource: ['route.request.querystring.token'],
      });
      expect(flatten(authorizer?.Properties.AuthorizerUri)).toContain(`<${fn('ws-authorizer').logicalId}.Arn>`);
    });

    it('has $disconnect, and subscribe/unsubscribe/$default that return a response', () => {
      const routeKeys = Object.values(template.findResources('AWS::ApiGatewayV2::Route'))
        .map((r) => r.Properties.RouteKey as string)
        .filter((key) => !key.includes(' /'));
      expect(routeKeys.sort()).toEqual(['$connect', '$default', '$disconnect', 'subscribe', 'unsubscribe']);
      for (const key of ['subscribe', 'unsubscribe', '$default']) {
        template.hasResourceProperties('AWS::ApiGatewayV2::Route', {
          RouteKey: key,
          RouteResponseSelectionExpression: '$default',
        });
      }
      template.resourceCountIs('AWS::ApiGatewayV2::RouteResponse', 3);
    });

    it('sends $default (an unknown action) to the ws-default Lambda', () => {
      const target = new Capture();
      template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: '$default', Target: target });
      const integrationId = flatten(target.asObject()).match(/integrations\/<(\w+)>/)?.[1] ?? '';
      const integration = template.findResources('AWS::ApiGatewayV2::Integration')[integrationId];
      expect(flatten(integration?.Properties.IntegrationUri)).toContain(`<${fn('ws-default').logicalId}.Arn>`);
    });

    it('deploys the live stage automatically, with access logs', () => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        StageName: 'live',
        AutoDeploy: true,
        AccessLogSettings: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('connectionId') },
      });
      template.resourceCountIs('AWS::ApiGateway::Account', 1);
    });
  });

  describe('migrations', () => {
    it('are applied before the read-model code and the projector mapping change', () => {
      const migrations = Object.keys(template.findResources('Custom::HeartbeatMigrations'));
      expect(migrations).toHaveLength(1);
      for (const name of ['stream-projector', 'http-api']) {
        template.hasResource('AWS::Lambda::Function', {
          Properties: { Environment: { Variables: Match.objectLike({ POWERTOOLS_SERVICE_NAME: name }) } },
          DependsOn: Match.arrayWith([migrations[0]]),
        });
      }
      template.hasResource('AWS::Lambda::EventSourceMapping', {
        Properties: Match.objectLike({ FunctionName: { Ref: fn('stream-projector').logicalId } }),
        DependsOn: Match.arrayWith([migrations[0]]),
      });
    });

    it('run through a custom resource whose properties carry the hash of the SQL files', () => {
      expect(env('db-migrate').MIGRATIONS_DIR).toBe('/var/task/migrations');
      expect(fn('db-migrate').properties.Timeout).toBeGreaterThanOrEqual(120);
      template.hasResourceProperties('Custom::HeartbeatMigrations', {
        ServiceToken: Match.anyValue(),
        migrationsHash: migrationsHash(),
      });
    });
  });
});

describe('migrationsHash', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'migrations-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('changes when a migration is added or edited, and only then', () => {
    writeFileSync(path.join(dir, '0001_a.sql'), 'CREATE TABLE a (id int);');
    const first = migrationsHash(dir);
    expect(migrationsHash(dir)).toBe(first);
    writeFileSync(path.join(dir, 'README.md'), 'not a migration');
    expect(migrationsHash(dir)).toBe(first);
    writeFileSync(path.join(dir, '0002_b.sql'), 'CREATE TABLE b (id int);');
    const second = migrationsHash(dir);
    expect(second).not.toBe(first);
    writeFileSync(path.join(dir, '0002_b.sql'), 'CREATE TABLE b (id bigint);');
    expect(migrationsHash(dir)).not.toBe(second);
  });
});
