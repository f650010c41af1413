import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addStatefulStack } from '../../infra/heartbeat.js';
import { CONNECTIONS_TABLE, createTableKeys, EVENT_LOG_TABLE } from '../../schemas/tables.js';
import { BUILD_TIMEOUT, STAGE, newApp } from './helpers.js';

describe('StatefulStack', () => {
  let template: Template;

  beforeAll(() => {
    const app = newApp();
    template = Template.fromStack(addStatefulStack(app, STAGE));
  }, BUILD_TIMEOUT);

  describe('event log table', () => {
    it('is keyed by robot id and sequence number (the keys DynamoDB Local gets), on demand, streaming new images', () => {
      const keys = createTableKeys(EVENT_LOG_TABLE);
      expect(keys.KeySchema.map((key) => key.AttributeName)).toEqual(['robotId', 'seq']);
      template.hasResourceProperties('AWS::DynamoDB::Table', {
        KeySchema: keys.KeySchema,
        AttributeDefinitions: Match.arrayWith(keys.AttributeDefinitions),
        BillingMode: 'PAY_PER_REQUEST',
        StreamSpecification: { StreamViewType: 'NEW_IMAGE' },
      });
    });

    it('has point-in-time recovery and deletion protection, and is retained when the stack goes', () => {
      template.hasResource('AWS::DynamoDB::Table', {
        Properties: Match.objectLike({
          KeySchema: Match.arrayWith([{ AttributeName: 'robotId', KeyType: 'HASH' }]),
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          DeletionProtectionEnabled: true,
        }),
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
      });
    });
  });

  it('keeps WebSocket connections in a pk/sk table that expires items by expiresAt', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: createTableKeys(CONNECTIONS_TABLE).KeySchema,
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: CONNECTIONS_TABLE.timeToLiveAttribute, Enabled: true },
    });
  });

  describe('network', () => {
    it('has two isolated subnets and no route to the internet', () => {
      template.resourceCountIs('AWS::EC2::Subnet', 2);
      template.resourceCountIs('AWS::EC2::NatGateway', 0);
      template.resourceCountIs('AWS::EC2::InternetGateway', 0);
      template.allResourcesProperties('AWS::EC2::Subnet', { MapPublicIpOnLaunch: false });
    });

    it('reaches DynamoDB through a gateway endpoint', () => {
      const service = new Capture();
      template.hasResourceProperties('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway', ServiceName: service });
      expect(JSON.stringify(service.asObject())).toContain('.dynamodb');
    });

    it('logs rejected traffic', () => {
      template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT', LogDestinationType: 'cloud-watch-logs' });
    });
  });

  describe('read-model database', () => {
    it('is an encrypted Aurora PostgreSQL Serverless v2 cluster with IAM auth and a generated secret', () => {
      template.hasResourceProperties('AWS::RDS::DBCluster', {
        Engine: 'aurora-postgresql',
        DatabaseName: 'heartbeat',
        StorageEncrypted: true,
        EnableIAMDatabaseAuthentication: true,
        DeletionProtection: true,
        ServerlessV2ScalingConfiguration: { MinCapacity: 0.5, MaxCapacity: Match.anyValue() },
        EnableCloudwatchLogsExports: ['postgresql'],
      });
      template.hasResourceProperties('AWS::RDS::DBInstance', {
        DBInstanceClass: 'db.serverless',
        Engine: 'aurora-postgresql',
        PubliclyAccessible: false,
      });
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        GenerateSecretString: Match.objectLike({ SecretStringTemplate: JSON.stringify({ username: 'heartbeat_admin' }) }),
      });
    });

    it('sits behind an RDS Proxy that requires IAM auth and TLS', () => {
      template.hasResourceProperties('AWS::RDS::DBProxy', {
        EngineFamily: 'POSTGRESQL',
        RequireTLS: true,
        Auth: [Match.objectLike({ AuthScheme: 'SECRETS', IAMAuth: 'REQUIRED' })],
      });
    });

    it('lets only the DB client security group reach the proxy, on 5432', () => {
      const proxyGroups = new Capture();
      template.hasResourceProperties('AWS::RDS::DBProxy', { VpcSecurityGroupIds: proxyGroups });
      const proxyGroupId = (proxyGroups.asArray()[0] as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0];

      const ingress = template.findResources('AWS::EC2::SecurityGroupIngress', {
        Properties: { GroupId: { 'Fn::GetAtt': [proxyGroupId, 'GroupId'] } },
      });
      const rules = Object.values(ingress).map((r) => r.Properties as Record<string, any>);
      expect(rules).toHaveLength(1);
      expect(rules[0]).toMatchObject({ IpProtocol: 'tcp', FromPort: 5432, ToPort: 5432 });
      const source = rules[0]!.SourceSecurityGroupId['Fn::GetAtt'][0] as string;
      expect(template.findResources('AWS::EC2::SecurityGroup')[source]?.Properties?.GroupDescription).toMatch(/read models/);
    });
  });

  describe('dead-letter queues', () => {
    it('are encrypted, refuse plain HTTP, and keep messages 14 days', () => {
      // Projector, broadcaster, ingest, rule errors, certificate retirer, deployment orchestrator.
      template.resourceCountIs('AWS::SQS::Queue', 6);
      template.allResourcesProperties('AWS::SQS::Queue', {
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 14 * 24 * 3600,
      });
      const policies = template.findResources('AWS::SQS::QueuePolicy');
      expect(Object.keys(policies)).toHaveLength(6);
      for (const policy of Object.values(policies)) {
        expect(policy.Properties.PolicyDocument.Statement).toEqual(
          expect.arrayContaining([
            expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        );
      }
    });

    it('each raise an alarm as soon as one message is visible', () => {
      template.resourceCountIs('AWS::CloudWatch::Alarm', 6);
      template.allResourcesProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Namespace: 'AWS/SQS',
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
      });
    });
  });

  describe('user pool', () => {
    it('has no self sign-up, a strong password policy, MFA and the Plus feature plan', () => {
      template.hasResourceProperties('AWS::Cognito::UserPool', {
        AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
        Policies: {
          PasswordPolicy: Match.objectLike({
            MinimumLength: Match.anyValue(),
            RequireLowercase: true,
            RequireUppercase: true,
            RequireNumbers: true,
            RequireSymbols: true,
          }),
        },
        MfaConfiguration: 'ON',
        UserPoolTier: 'PLUS',
      });
      const policies = new Capture();
      template.hasResourceProperties('AWS::Cognito::UserPool', { Policies: policies });
      expect((policies.asObject() as any).PasswordPolicy.MinimumLength).toBeGreaterThanOrEqual(12);
    });

    it('has the operator, engineer and admin groups', () => {
      const groups = Object.values(template.findResources('AWS::Cognito::UserPoolGroup')).map(
        (group) => group.Properties.GroupName,
      );
      expect(groups.sort()).toEqual(['admin', 'engineer', 'operator']);
    });

    it('has the hosted UI domain, and leaves the app client to the dashboard (test/infra/dashboard-stack.test.ts)', () => {
      template.resourceCountIs('AWS::Cognito::UserPoolDomain', 1);
      template.resourceCountIs('AWS::Cognito::UserPoolClient', 0);
    });
  });
});
