import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHeartbeat, type HeartbeatStacks } from '../../infra/heartbeat.js';
import { SPA_REWRITE_SOURCE, contentSecurityPolicy } from '../../infra/constructs/dashboard-hosting.js';
import { DASHBOARD_ROUTES, DashboardConfig } from '../../schemas/dashboard.js';
import { BUILD_TIMEOUT, flatten, newApp } from './helpers.js';

/**
 * The dashboard in AWS (infra/constructs/dashboard-hosting.ts, part of the Api stack): hosting, headers, config.json,
 * sign-in and the API's CORS. Resources are looked at in the synthesized templates.
 */
const ENV = { account: '123456789012', region: 'eu-west-1' };
const DEV_SERVER = 'http://localhost:5173';

type Resource = { Type: string; Properties: Record<string, any>; DependsOn?: string[] };
type Resources = Record<string, Resource>;

const ofType = (resources: Resources, type: string): Array<[string, Resource]> =>
  Object.entries(resources).filter(([, r]) => r.Type === type);
const only = (resources: Resources, type: string): [string, Resource] => {
  const found = ofType(resources, type);
  expect(found.map(([id]) => id), type).toHaveLength(1);
  return found[0]!;
};

describe('the dashboard of a stage', () => {
  let stacks: HeartbeatStacks;
  let api: Resources;
  let stateful: Resources;
  let outdir: string;

  beforeAll(() => {
    const app = newApp();
    stacks = buildHeartbeat(app, { stage: 'test', env: ENV, dashboardOrigins: [DEV_SERVER] });
    outdir = app.synth().directory;
    api = Template.fromStack(stacks.api).toJSON().Resources as Resources;
    stateful = Template.fromStack(stacks.stateful).toJSON().Resources as Resources;
  }, BUILD_TIMEOUT);
  afterAll(() => rmSync(outdir, { recursive: true, force: true }));

  const distribution = () => only(api, 'AWS::CloudFront::Distribution');
  const siteBucketId = () => {
    const [, dist] = distribution();
    const s3Origin = dist.Properties.DistributionConfig.Origins.find((o: any) => o.S3OriginConfig);
    return s3Origin.DomainName['Fn::GetAtt'][0] as string;
  };
  const cognitoOrigin = () => {
    const [domainId, domain] = only(stateful, 'AWS::Cognito::UserPoolDomain');
    expect(domain.Properties.Domain).toBe('lekiwi-heartbeat-test-123456789012');
    const outputs = Template.fromStack(stacks.stateful).toJSON().Outputs as Record<string, any>;
    const exported = Object.values(outputs).find((o) => o.Export && JSON.stringify(o.Value) === JSON.stringify({ Ref: domainId }));
    const exportName = exported.Export.Name as string;
    return `https://<import:${exportName}>.auth.eu-west-1.amazoncognito.com`;
  };
  const webSocketOrigin = () => {
    const [wsId] = ofType(api, 'AWS::ApiGatewayV2::Api').find(([, r]) => r.Properties.ProtocolType === 'WEBSOCKET')!;
    return `wss://<${wsId}>.execute-api.eu-west-1.<AWS::URLSuffix>`;
  };

  describe('bucket', () => {
    it('is private, encrypted, versioned and logged', () => {
      const bucket = api[siteBucketId()]!;
      expect(bucket.Properties).toMatchObject({
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
        VersioningConfiguration: { Status: 'Enabled' },
        LoggingConfiguration: { DestinationBucketName: { Ref: expect.any(String) } },
      });
      expect(bucket.Properties.WebsiteConfiguration).toBeUndefined();
    });

    it('lets only this distribution read it (OAC), and only over TLS', () => {
      const [distId] = distribution();
      const policy = ofType(api, 'AWS::S3::BucketPolicy').find(([, p]) => p.Properties.Bucket.Ref === siteBucketId())![1];
      const statements = policy.Properties.PolicyDocument.Statement as any[];
      const allows = statements.filter((s) => s.Effect === 'Allow');
      expect(allows).toHaveLength(1);
      expect(allows[0]).toMatchObject({ Action: 's3:GetObject', Principal: { Service: 'cloudfront.amazonaws.com' } });
      expect(flatten(allows[0].Condition.StringEquals['AWS:SourceArn'])).toBe(
        `arn:<AWS::Partition>:cloudfront::<AWS::AccountId>:distribution/<${distId}>`,
      );
      expect(statements).toEqual(
        expect.arrayContaining([expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      );
      const [, dist] = distribution();
      const s3Origin = dist.Properties.DistributionConfig.Origins.find((o: any) => o.S3OriginConfig);
      const oacId = s3Origin.OriginAccessControlId['Fn::GetAtt'][0];
      expect(api[oacId]?.Properties.OriginAccessControlConfig).toMatchObject({ OriginAccessControlOriginType: 's3', SigningBehavior: 'always' });
    });
  });

  describe('distribution', () => {
    it('serves index.html at the root over HTTP/2 and 3, HTTPS only, with access logs', () => {
      const config = distribution()[1].Properties.DistributionConfig;
      expect(config).toMatchObject({
        DefaultRootObject: 'index.html',
        HttpVersion: 'http2and3',
        DefaultCacheBehavior: { ViewerProtocolPolicy: 'redirect-to-https', AllowedMethods: ['GET', 'HEAD'] },
        Logging: { Bucket: expect.anything() },
      });
      // The SPA fallback is the function, not error responses that would turn real errors into 200s.
      expect(config.CustomErrorResponses).toBeUndefined();
    });

    it('passes /api/v2/* to the HTTP API uncached, with every viewer header but Host', () => {
      const config = distribution()[1].Properties.DistributionConfig;
      expect(config.CacheBehaviors).toHaveLength(1);
      const [behavior] = config.CacheBehaviors;
      expect(behavior).toMatchObject({
        PathPattern: '/api/v2/*',
        ViewerProtocolPolicy: 'https-only',
        AllowedMethods: expect.arrayContaining(['GET', 'POST', 'OPTIONS']),
        CachePolicyId: '4135ea2d-6df8-44a3-9df3-4b5a84be39ad', // Managed-CachingDisabled
        OriginRequestPolicyId: 'b689b0a8-53d0-40ab-baf2-68738e2966ac', // Managed-AllViewerExceptHostHeader
      });
      const origin = config.Origins.find((o: any) => o.Id === behavior.TargetOriginId);
      const [httpId] = ofType(api, 'AWS::ApiGatewayV2::Api').find(([, r]) => r.Properties.ProtocolType === 'HTTP')!;
      expect(flatten(origin.DomainName)).toBe(`<${httpId}>.execute-api.eu-west-1.<AWS::URLSuffix>`);
      expect(origin.CustomOriginConfig).toMatchObject({ OriginProtocolPolicy: 'https-only', OriginSSLProtocols: ['TLSv1.2'] });
    });

    it('rewrites the client routes, and only them, to /index.html', () => {
      const [, fn] = only(api, 'AWS::CloudFront::Function');
      expect(fn.Properties.FunctionCode).toBe(SPA_REWRITE_SOURCE);
      expect(fn.Properties.FunctionConfig.Runtime).toBe('cloudfront-js-2.0');
      const config = distribution()[1].Properties.DistributionConfig;
      expect(config.DefaultCacheBehavior.FunctionAssociations).toEqual([
        { EventType: 'viewer-request', FunctionARN: { 'Fn::GetAtt': [ofType(api, 'AWS::CloudFront::Function')[0]![0], 'FunctionARN'] } },
      ]);
      const handler = new Function(`${SPA_REWRITE_SOURCE}; return handler;`)() as (e: { request: { uri: string } }) => { uri: string };
      const rewrite = (uri: string) => handler({ request: { uri } }).uri;
      for (const route of DASHBOARD_ROUTES) expect(rewrite(route.replace(':id', 'lekiwi-LK0001')), route).toBe('/index.html');
      for (const file of ['/index.html', '/config.json', '/assets/index-Fx7test1.js', '/assets/index-Fx7test1.js.map', '/favicon.ico']) {
        expect(rewrite(file), file).toBe(file);
      }
    });

    it('sends the security headers on every behaviour, with a CSP naming exactly the WebSocket API and Cognito', () => {
      const [policyId, policy] = only(api, 'AWS::CloudFront::ResponseHeadersPolicy');
      const config = distribution()[1].Properties.DistributionConfig;
      for (const behavior of [config.DefaultCacheBehavior, ...config.CacheBehaviors]) {
        expect(behavior.ResponseHeadersPolicyId).toEqual({ Ref: policyId });
      }
      const security = policy.Properties.ResponseHeadersPolicyConfig.SecurityHeadersConfig;
      expect(security).toMatchObject({
        StrictTransportSecurity: { IncludeSubdomains: true, Override: true },
        ContentTypeOptions: { Override: true },
        FrameOptions: { FrameOption: 'DENY', Override: true },
        ReferrerPolicy: { ReferrerPolicy: 'no-referrer', Override: true },
      });
      expect(security.StrictTransportSecurity.AccessControlMaxAgeSec).toBeGreaterThanOrEqual(31_536_000);
      const csp = flatten(security.ContentSecurityPolicy.ContentSecurityPolicy);
      expect(csp).toBe(contentSecurityPolicy({ webSocket: webSocketOrigin(), cognito: cognitoOrigin() }));
      const directives = new Map(
        csp.split(';').map((d) => {
          const [name, ...values] = d.trim().split(/\s+/);
          return [name!, values] as const;
        }),
      );
      expect(directives.get('connect-src')).toEqual(["'self'", webSocketOrigin(), cognitoOrigin()]);
      expect(directives.get('form-action')).toEqual(["'self'", cognitoOrigin()]);
      for (const name of ['default-src', 'script-src', 'style-src', 'base-uri']) expect(directives.get(name), name).toEqual(["'self'"]);
      expect(directives.get('img-src')).toEqual(["'self'", 'data:']);
      expect(directives.get('frame-ancestors')).toEqual(["'none'"]);
      expect(csp).not.toMatch(/\*|unsafe/);
    });
  });

  describe('deployment of the bundle', () => {
    const deployments = () => ofType(api, 'Custom::CDKBucketDeployment');
    const withConfig = () => deployments().find(([, d]) => d.Properties.SourceMarkers?.some((m: object) => Object.keys(m).length > 0))!;

    it('uploads assets/* immutable and kept, then the rest revalidated and pruned', () => {
      expect(deployments()).toHaveLength(2);
      const [assetsId, assets] = deployments().find(([, d]) => d.Properties.Include)!;
      expect(assets.Properties).toMatchObject({
        Include: ['assets/*'],
        Exclude: ['*'],
        Prune: false,
        SystemMetadata: { 'cache-control': 'public, max-age=31536000, immutable' },
        DestinationBucketName: { Ref: siteBucketId() },
      });
      const [, site] = withConfig();
      expect(site.Properties).toMatchObject({
        Exclude: ['assets/*'],
        Prune: true,
        SystemMetadata: { 'cache-control': 'no-cache' },
        DestinationBucketName: { Ref: siteBucketId() },
      });
      expect(site.DependsOn).toEqual(expect.arrayContaining([assetsId]));
      // The same bundle (one asset) in both.
      expect(site.Properties.SourceObjectKeys[0]).toBe(assets.Properties.SourceObjectKeys[0]);
    });

    it('writes a config.json that DashboardConfig accepts, with the stage, the wss URL and the Cognito endpoints', () => {
      const [, site] = withConfig();
      const index = (site.Properties.SourceMarkers as object[]).findIndex((m) => Object.keys(m).length > 0);
      const assetHash = String(site.Properties.SourceObjectKeys[index]).replace(/\.zip$/, '');
      const file = path.join(outdir, `asset.${assetHash}`, 'config.json');
      expect(existsSync(file), file).toBe(true);
      let text = readFileSync(file, 'utf8');
      for (const [marker, value] of Object.entries(site.Properties.SourceMarkers[index] as Record<string, unknown>)) {
        text = text.split(marker).join(flatten(value));
      }
      const written = JSON.parse(text) as Record<string, any>;
      const [clientId] = only(api, 'AWS::Cognito::UserPoolClient');
      expect(written).toEqual({
        stage: 'test',
        apiBaseUrl: '/api/v2',
        webSocketUrl: `${webSocketOrigin()}/live`,
        auth: {
          authorizeUrl: `${cognitoOrigin()}/oauth2/authorize`,
          tokenUrl: `${cognitoOrigin()}/oauth2/token`,
          logoutUrl: `${cognitoOrigin()}/logout`,
          clientId: `<${clientId}>`,
          scopes: ['openid', 'email', 'profile'],
        },
      });
      // What CloudFormation substitutes, with plausible values for the references: a valid DashboardConfig.
      const deployed = JSON.parse(text.replace(/<([^>]+)>/g, (_, name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, '')));
      expect(DashboardConfig.safeParse(deployed).error).toBeUndefined();
    });
  });

  describe('sign-in', () => {
    it('has a hosted UI domain for the user pool, named after the stage and account', () => {
      const [, domain] = only(stateful, 'AWS::Cognito::UserPoolDomain');
      const [poolId] = only(stateful, 'AWS::Cognito::UserPool');
      expect(domain.Properties).toEqual({ Domain: 'lekiwi-heartbeat-test-123456789012', UserPoolId: { Ref: poolId } });
    });

    it('has one public app client: code grant only, redirecting to the distribution and the configured origins', () => {
      expect(ofType(stateful, 'AWS::Cognito::UserPoolClient')).toEqual([]);
      const [, client] = only(api, 'AWS::Cognito::UserPoolClient');
      const [distId] = distribution();
      expect(client.Properties).toMatchObject({
        GenerateSecret: false,
        AllowedOAuthFlowsUserPoolClient: true,
        AllowedOAuthFlows: ['code'],
        AllowedOAuthScopes: ['openid', 'email', 'profile'],
        SupportedIdentityProviders: ['COGNITO'],
        EnableTokenRevocation: true,
        PreventUserExistenceErrors: 'ENABLED',
      });
      const redirects = [`https://<${distId}.DomainName>/`, `${DEV_SERVER}/`];
      expect(client.Properties.CallbackURLs.map(flatten)).toEqual(redirects);
      expect(client.Properties.LogoutURLs.map(flatten)).toEqual(redirects);
    });

    it('makes both APIs trust that client', () => {
      const [clientId] = only(api, 'AWS::Cognito::UserPoolClient');
      const [, jwt] = ofType(api, 'AWS::ApiGatewayV2::Authorizer').find(([, a]) => a.Properties.AuthorizerType === 'JWT')!;
      expect(jwt.Properties.JwtConfiguration.Audience).toEqual([{ Ref: clientId }]);
      const wsAuthorizer = ofType(api, 'AWS::Lambda::Function').find(
        ([, f]) => f.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME === 'ws-authorizer',
      )![1];
      expect(wsAuthorizer.Properties.Environment.Variables.JWT_AUDIENCE).toEqual({ Ref: clientId });
    });
  });

  it("limits the HTTP API's CORS to the configured origins (the dashboard itself is same-origin)", () => {
    const [, http] = ofType(api, 'AWS::ApiGatewayV2::Api').find(([, r]) => r.Properties.ProtocolType === 'HTTP')!;
    expect(http.Properties.CorsConfiguration.AllowOrigins).toEqual([DEV_SERVER]);
  });

  it('keeps the API stack depending on the stateful stack only', () => {
    expect(stacks.api.dependencies.map((s) => s.stackName)).toEqual([stacks.stateful.stackName]);
  });
});

describe('dashboard options', () => {
  const resourcesOf = (stacks: HeartbeatStacks, which: 'api' | 'stateful') =>
    Template.fromStack(stacks[which]).toJSON().Resources as Resources;

  it('has no CORS at all without extra origins, and redirects only to the distribution', () => {
    const stacks = buildHeartbeat(newApp(), { stage: 'dev', env: ENV });
    const api = resourcesOf(stacks, 'api');
    const [, http] = ofType(api, 'AWS::ApiGatewayV2::Api').find(([, r]) => r.Properties.ProtocolType === 'HTTP')!;
    expect(http.Properties.CorsConfiguration).toBeUndefined();
    const [, client] = only(api, 'AWS::Cognito::UserPoolClient');
    expect(client.Properties.CallbackURLs.map(flatten)).toEqual([expect.stringMatching(/^https:\/\/<Dashboard.*\.DomainName>\/$/)]);
  });

  it('serves a custom domain with its certificate and TLS 1.2, and accepts it as a redirect', () => {
    const app = newApp();
    app.node.setContext('dashboardDomain', 'heartbeat.example.com');
    app.node.setContext('dashboardCertificateArn', 'arn:aws:acm:us-east-1:123456789012:certificate/abc');
    const stacks = buildHeartbeat(app, { stage: 'prod', env: ENV });
    const api = resourcesOf(stacks, 'api');
    const [, dist] = only(api, 'AWS::CloudFront::Distribution');
    expect(dist.Properties.DistributionConfig).toMatchObject({
      Aliases: ['heartbeat.example.com'],
      ViewerCertificate: {
        AcmCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abc',
        MinimumProtocolVersion: 'TLSv1.2_2021',
        SslSupportMethod: 'sni-only',
      },
    });
    const [, client] = only(api, 'AWS::Cognito::UserPoolClient');
    expect(client.Properties.CallbackURLs.map(flatten)).toContain('https://heartbeat.example.com/');
    expect(Template.fromStack(stacks.api).toJSON().Outputs.DashboardUrl.Value).toBe('https://heartbeat.example.com');
    // cdk-nag: the viewer TLS policy now holds (no CFR4 acknowledgement needed, none left behind).
    const findings = new AwsSolutionsChecks()
      .validateScope(app)
      .violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.constructPath}`))
      .filter((finding) => finding.includes('/Dashboard/') || finding.includes('CDKBucketDeployment'));
    expect(findings).toEqual([]);
  });

  it('refuses half a custom domain', () => {
    const app = newApp();
    app.node.setContext('dashboardDomain', 'heartbeat.example.com');
    expect(() => buildHeartbeat(app, { stage: 'prod', env: ENV })).toThrow(/dashboardCertificateArn/);
  });

  it('gives each stage its own Cognito domain, takes one from context, and refuses one Cognito would', () => {
    const domainOf = (stacks: HeartbeatStacks) => only(resourcesOf(stacks, 'stateful'), 'AWS::Cognito::UserPoolDomain')[1].Properties.Domain;
    expect(domainOf(buildHeartbeat(newApp(), { stage: 'prod', env: ENV }))).toBe('lekiwi-heartbeat-prod-123456789012');
    // Env-agnostic: the account is CloudFormation's.
    expect(flatten(domainOf(buildHeartbeat(newApp(), { stage: 'dev' })))).toBe('lekiwi-heartbeat-dev-<AWS::AccountId>');
    const app = newApp();
    app.node.setContext('cognitoDomainPrefix', 'acme-fleet-prod');
    expect(domainOf(buildHeartbeat(app, { stage: 'prod', env: ENV }))).toBe('acme-fleet-prod');
    for (const bad of ['Acme', 'acme_fleet', 'my-cognito-login', '-acme']) {
      expect(() => buildHeartbeat(newApp(), { stage: 'prod', env: ENV, cognitoDomainPrefix: bad }), bad).toThrow(/not a Cognito prefix domain/);
    }
  });

  it('fails synthesis without a dashboard build, saying how to make one', () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'no-dashboard-'));
    try {
      expect(() => buildHeartbeat(newApp(), { stage: 'dev', dashboardBundle: empty })).toThrow(/npm run dashboard:build/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
