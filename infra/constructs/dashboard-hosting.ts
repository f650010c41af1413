import { existsSync } from 'node:fs';
import path from 'node:path';
import { CfnOutput, Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3deploy from 'aws-cdk-lib/aws-s3-deployment';
import { Construct } from 'constructs';
import type { DashboardConfig } from '../../schemas/dashboard.js';
import { REPO_ROOT } from './app-function.js';
import { nagEnvironment } from './nag-arn.js';

/** What `npm run dashboard:build` writes (dashboard/vite.config.ts): index.html, hashed assets/, source maps. */
export const DASHBOARD_BUNDLE_DIR = path.join(REPO_ROOT, 'dashboard', 'dist');
/** The HTTP API's routes all live under this prefix; the distribution passes it through to API Gateway. */
export const API_PATH_PREFIX = '/api/v2';
/** Scopes the dashboard asks Cognito for (the app client allows exactly these). */
export const DASHBOARD_SCOPES = [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE];

/** Vite's content-hashed files: a new build has new names, so a name's content never changes. */
const IMMUTABLE = s3deploy.CacheControl.fromString('public, max-age=31536000, immutable');
/** index.html and config.json: the browser revalidates each time (a deploy must reach open tabs on reload). */
const REVALIDATE = s3deploy.CacheControl.fromString('no-cache');

/**
 * The SPA fallback, as a CloudFront Function (viewer request, default behaviour only): a path whose last segment has
 * no file extension is one of the dashboard's client routes (`/`, `/alerts`, `/robots/<id>`; robot ids have no dot)
 * and gets the app shell. Files keep their own path, so a missing asset is still a 403/404 and `/api/v2/*` (its own
 * behaviour) is never touched — unlike custom error responses, which would turn every error into a 200 index.html.
 */
export const SPA_REWRITE_SOURCE = `function handler(event) {
  var request = event.request;
  var last = request.uri.substring(request.uri.lastIndexOf('/') + 1);
  if (last.indexOf('.') === -1) request.uri = '/index.html';
  return request;
}`;

/** The origins the page may reach besides its own (`'self'` covers `/api/v2`, served by the same distribution). */
export interface ContentSecurityPolicyOrigins {
  /** `wss://<api id>.execute-api.<region>.amazonaws.com` */
  readonly webSocket: string;
  /** `https://<prefix>.auth.<region>.amazoncognito.com`: the token endpoint (fetch) and the hosted UI (navigation). */
  readonly cognito: string;
}

/** The dashboard's Content-Security-Policy: its own origin, plus exactly the WebSocket API and the Cognito domain. */
export function contentSecurityPolicy(origins: ContentSecurityPolicyOrigins): string {
  return [
    "default-src 'self'",
    `connect-src 'self' ${origins.webSocket} ${origins.cognito}`,
    "img-src 'self' data:",
    "style-src 'self'",
    "script-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'self'",
    `form-action 'self' ${origins.cognito}`,
  ].join('; ');
}

/** `https://<prefix>.auth.<region>.amazoncognito.com`, the hosted UI's origin. */
export function cognitoDomainOrigin(domainPrefix: string, region: string): string {
  return `https://${domainPrefix}.auth.${region}.amazoncognito.com`;
}

/** config.json for a stage (schemas/dashboard.ts): the API on the page's own origin, sign-in at the Cognito domain. */
export function dashboardConfig(input: {
  stage: string;
  webSocketUrl: string;
  cognitoOrigin: string;
  clientId: string;
}): DashboardConfig {
  return {
    stage: input.stage,
    apiBaseUrl: API_PATH_PREFIX,
    webSocketUrl: input.webSocketUrl,
    auth: {
      authorizeUrl: `${input.cognitoOrigin}/oauth2/authorize`,
      tokenUrl: `${input.cognitoOrigin}/oauth2/token`,
      logoutUrl: `${input.cognitoOrigin}/logout`,
      clientId: input.clientId,
      scopes: DASHBOARD_SCOPES.map((scope) => scope.scopeName),
    },
  };
}

/** The OAuth redirect (and logout) URL the dashboard uses for an origin: the origin's root, `<origin>/`. */
export const oauthRedirectUrl = (origin: string): string => `${origin.replace(/\/$/, '')}/`;

export interface DashboardCustomDomain {
  /** e.g. `heartbeat.example.com`; point a CNAME (or alias) at the `DashboardDistributionDomain` output. */
  readonly domainName: string;
  /** An ACM certificate in us-east-1 covering the domain (CloudFront only takes certificates from there). */
  readonly certificateArn: string;
}

export interface DashboardHostingProps {
  /** Shown in the page's header and written into config.json. */
  readonly stage: string;
  /** The built bundle (index.html and assets/). @default DASHBOARD_BUNDLE_DIR */
  readonly bundleDir?: string;
  /** Fronted at `/api/v2/*` by the same distribution: the page calls its own origin, no CORS involved. */
  readonly httpApi: apigwv2.IHttpApi;
  /** The live feed; the page connects to it directly (wss://), so it is in the CSP's connect-src. */
  readonly webSocketApi: apigwv2.IWebSocketApi;
  readonly webSocketStage: apigwv2.IWebSocketStage;
  readonly userPool: cognito.IUserPool;
  readonly userPoolDomain: cognito.IUserPoolDomain;
  /** Other origins the dashboard is opened from (a dev server, say): OAuth callback and logout URLs too. */
  readonly extraOrigins?: string[];
  /** Serve the dashboard on a domain of yours (TLS 1.2+ then applies to viewers; see README "Deploying"). */
  readonly customDomain?: DashboardCustomDomain;
}

/**
 * The dashboard in AWS: a private, versioned S3 bucket read by CloudFront through Origin Access Control, the API under
 * `/api/v2/*` on the same distribution, security headers on every response, the built bundle uploaded on deploy with
 * the stage's config.json beside it, and the Cognito app client the page signs in with.
 *
 * Invariants: the bucket is reachable only through this distribution (OAC with the distribution's ARN in the bucket
 * policy, public access blocked, TLS only); the bundle is the same for every stage and only config.json differs;
 * index.html and config.json are revalidated on every load, assets/* never (their names change with their content);
 * the app client has no secret, uses the authorization code grant only (the page uses PKCE) and redirects only to
 * this distribution's origin, the custom domain and `extraOrigins`.
 *
 * Why the client is here and not beside the user pool: its callback URL is the distribution's generated domain, the
 * distribution fronts the HTTP API, and the API's authorizers name the client. Within one stack CloudFormation orders
 * these resources itself (APIs → distribution → client → authorizers); split over stacks they would form a cycle.
 */
export class DashboardHosting extends Construct {
  readonly bucket: s3.Bucket;
  readonly distribution: cloudfront.Distribution;
  readonly client: cognito.UserPoolClient;
  /** `https://<distribution domain>` (or the custom domain), the origin users open. */
  readonly url: string;
  readonly contentSecurityPolicy: string;
  readonly config: DashboardConfig;

  constructor(scope: Construct, id: string, props: DashboardHostingProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const bundleDir = props.bundleDir ?? DASHBOARD_BUNDLE_DIR;
    if (!existsSync(path.join(bundleDir, 'index.html'))) {
      throw new Error(
        `The dashboard bundle is missing (no index.html in ${bundleDir}): run \`npm run dashboard:build\` before \`cdk synth\` or \`cdk deploy\``,
      );
    }

    // ---- Buckets. The log bucket takes CloudFront's standard logs (which need ACLs) and the site bucket's
    // server access logs; both are kept when the stage is deleted (logs for audit; the site bucket is not empty).
    const logBucket = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.OBJECT_WRITER,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.bucket = new s3.Bucket(this, 'Site', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      versioned: true,
      // Old versions are for rolling back a bad upload, not for keeping.
      lifecycleRules: [{ noncurrentVersionExpiration: Duration.days(30) }],
      serverAccessLogsBucket: logBucket,
      serverAccessLogsPrefix: 's3/',
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---- Distribution.
    const cognitoOrigin = cognitoDomainOrigin(props.userPoolDomain.domainName, stack.region);
    this.contentSecurityPolicy = contentSecurityPolicy({
      webSocket: `wss://${props.webSocketApi.apiId}.execute-api.${stack.region}.${stack.urlSuffix}`,
      cognito: cognitoOrigin,
    });
    const headers = new cloudfront.ResponseHeadersPolicy(this, 'SecurityHeaders', {
      comment: 'Lekiwi Heartbeat dashboard: CSP, HSTS, no sniffing, no framing, no referrer',
      securityHeadersBehavior: {
        contentSecurityPolicy: { contentSecurityPolicy: this.contentSecurityPolicy, override: true },
        strictTransportSecurity: { accessControlMaxAge: Duration.days(730), includeSubdomains: true, override: true },
        contentTypeOptions: { override: true },
        frameOptions: { frameOption: cloudfront.HeadersFrameOption.DENY, override: true },
        referrerPolicy: { referrerPolicy: cloudfront.HeadersReferrerPolicy.NO_REFERRER, override: true },
      },
    });
    const spaRewrite = new cloudfront.Function(this, 'SpaRewrite', {
      comment: 'Serves index.html for the dashboard client routes (paths without a file extension)',
      runtime: cloudfront.FunctionRuntime.JS_2_0,
      code: cloudfront.FunctionCode.fromInline(SPA_REWRITE_SOURCE),
    });
    const apiOrigin = new origins.HttpOrigin(`${props.httpApi.apiId}.execute-api.${stack.region}.${stack.urlSuffix}`, {
      protocolPolicy: cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
      originSslProtocols: [cloudfront.OriginSslPolicy.TLS_V1_2],
    });
    const custom = props.customDomain;
    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: `Lekiwi Heartbeat dashboard (${props.stage})`,
      defaultRootObject: 'index.html',
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      ...(custom
        ? {
            domainNames: [custom.domainName],
            certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', custom.certificateArn),
            minimumProtocolVersion: cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
          }
        : {}),
      enableLogging: true,
      logBucket,
      logFilePrefix: 'cloudfront/',
      defaultBehavior: {
        origin: origins.S3BucketOrigin.withOriginAccessControl(this.bucket),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
        cachePolicy: cloudfront.CachePolicy.CACHING_OPTIMIZED,
        responseHeadersPolicy: headers,
        functionAssociations: [{ function: spaRewrite, eventType: cloudfront.FunctionEventType.VIEWER_REQUEST }],
        compress: true,
      },
      additionalBehaviors: {
        // Never cached; every viewer header but Host (API Gateway routes on its own host name) reaches the API,
        // Authorization included.
        [`${API_PATH_PREFIX}/*`]: {
          origin: apiOrigin,
          viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
          allowedMethods: cloudfront.AllowedMethods.ALLOW_ALL,
          cachePolicy: cloudfront.CachePolicy.CACHING_DISABLED,
          originRequestPolicy: cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
          responseHeadersPolicy: headers,
        },
      },
    });
    Validations.of(this.distribution).acknowledge({
      id: 'AwsSolutions-CFR1',
      reason: 'The fleet is operated from wherever its engineers are; every request past the app shell needs a Cognito sign-in with MFA.',
    });
    Validations.of(this.distribution).acknowledge({
      id: 'AwsSolutions-CFR2',
      reason:
        'No WAF yet: static files and an API that rejects unauthenticated requests at its JWT authorizer, throttled per stage. A web ACL (us-east-1) is the next step if the dashboard becomes a target.',
    });
    if (!custom) {
      Validations.of(this.distribution).acknowledge({
        id: 'AwsSolutions-CFR4',
        reason:
          'Without a custom domain the distribution uses the default *.cloudfront.net certificate, whose security policy cannot be set; with one (-c dashboardDomain, -c dashboardCertificateArn) viewers get TLSv1.2_2021.',
      });
    }
    this.url = custom ? `https://${custom.domainName}` : `https://${this.distribution.distributionDomainName}`;

    // ---- Sign-in: the page's app client (public: no secret; authorization code grant, with PKCE from the page).
    const pageOrigins = [
      `https://${this.distribution.distributionDomainName}`,
      ...(custom ? [`https://${custom.domainName}`] : []),
      ...(props.extraOrigins ?? []),
    ];
    const redirectUrls = [...new Set(pageOrigins.map(oauthRedirectUrl))];
    this.client = new cognito.UserPoolClient(this, 'DashboardClient', {
      userPool: props.userPool,
      userPoolClientName: 'dashboard',
      generateSecret: false,
      authFlows: { userSrp: true },
      supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: DASHBOARD_SCOPES,
        callbackUrls: redirectUrls,
        logoutUrls: redirectUrls,
      },
      preventUserExistenceErrors: true,
      enableTokenRevocation: true,
      accessTokenValidity: Duration.hours(1),
      idTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.days(7),
    });

    // ---- The bundle, then index.html and the stage's config.json (after the assets they name are in place).
    this.config = dashboardConfig({
      stage: props.stage,
      webSocketUrl: props.webSocketStage.url,
      cognitoOrigin,
      clientId: this.client.userPoolClientId,
    });
    const bundle = s3deploy.Source.asset(bundleDir);
    const assets = new s3deploy.BucketDeployment(this, 'DeployAssets', {
      destinationBucket: this.bucket,
      sources: [bundle],
      exclude: ['*'],
      include: ['assets/*'],
      // Tabs still open on the previous index.html load its chunks lazily: old hashed files stay (a few hundred kB
      // per release; remove old ones by hand if it ever matters).
      prune: false,
      cacheControl: [IMMUTABLE],
      memoryLimit: 256,
    });
    const site = new s3deploy.BucketDeployment(this, 'DeploySite', {
      destinationBucket: this.bucket,
      sources: [bundle, s3deploy.Source.jsonData('config.json', this.config)],
      exclude: ['assets/*'],
      prune: true,
      cacheControl: [REVALIDATE],
      memoryLimit: 256,
    });
    site.node.addDependency(assets);
    this.acknowledgeDeploymentHandler();

    new CfnOutput(stack, 'DashboardUrl', { value: this.url, description: 'Open the dashboard here' });
    new CfnOutput(stack, 'DashboardDistributionDomain', {
      value: this.distribution.distributionDomainName,
      description: 'Point a custom domain (CNAME or alias) here',
    });
    new CfnOutput(stack, 'DashboardClientId', { value: this.client.userPoolClientId });
  }

  /**
   * BucketDeployment's upload function (one per stack, owned by aws-cdk-lib): its runtime and the grants it makes are
   * aws-cdk-lib's, each limited to the CDK asset bucket (read) and this site bucket (write).
   */
  private acknowledgeDeploymentHandler(): void {
    const stack = Stack.of(this);
    const handler = stack.node.children.find((child) => child.node.id.startsWith('Custom::CDKBucketDeployment'));
    if (!handler) throw new Error('BucketDeployment no longer adds its Custom::CDKBucketDeployment function to the stack: update this acknowledgement');
    const { account, region } = nagEnvironment(stack);
    const siteArn = `<${stack.getLogicalId(this.bucket.node.defaultChild as s3.CfnBucket)}.Arn>`;
    const assetBucket = stack.synthesizer.bootstrapQualifier ?? 'hnb659fds';
    const acknowledge = (id: string, reason: string) => Validations.of(handler).acknowledge({ id, reason });
    acknowledge(
      'AwsSolutions-L1',
      'The upload function of aws-cdk-lib BucketDeployment runs the Python runtime aws-cdk-lib pins for its bundled AWS CLI layer; it is upgraded with aws-cdk-lib.',
    );
    acknowledge(
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'The BucketDeployment upload function (owned by aws-cdk-lib) only writes its own logs with this AWS-maintained policy.',
    );
    for (const action of ['s3:GetObject*', 's3:GetBucket*', 's3:List*', 's3:DeleteObject*', 's3:Abort*']) {
      acknowledge(
        `AwsSolutions-IAM5[Action::${action}]`,
        'The BucketDeployment grants (aws-cdk-lib): read the CDK asset bucket, sync and prune the dashboard bucket; no other bucket is named.',
      );
    }
    acknowledge(
      `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-${assetBucket}-assets-${account}-${region}/*]`,
      'The bundle and config.json are uploaded as CDK assets: the function reads them from the bootstrap asset bucket, whose object keys are content hashes.',
    );
    acknowledge(
      `AwsSolutions-IAM5[Resource::${siteArn}/*]`,
      'The function syncs the whole bundle into the dashboard bucket: every key of that one bucket, and no other.',
    );
  }
}
