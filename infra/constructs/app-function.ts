import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat, type ICommandHooks } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** The repository root: infra/constructs/ is two levels down. Entries and the lock file are found from here. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const HANDLERS_DIR = path.join(REPO_ROOT, 'functions', 'handlers');

/** The Lambda runtime of every function: the newest Node.js that Lambda and cdk-nag (AwsSolutions-L1) know. */
export const RUNTIME = lambda.Runtime.NODEJS_24_X;
export const POWERTOOLS_METRICS_NAMESPACE = 'LekiwiHeartbeat';

/**
 * esbuild emits ESM, but some bundled CommonJS dependencies (aws-xray-sdk-core, pg) still call `require` for
 * Node built-ins; ESM has no `require`, so the banner defines one.
 */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __heartbeatCreateRequire } from 'node:module'; const require = __heartbeatCreateRequire(import.meta.url);";

/** Where the network placement of a function inside the VPC comes from. */
export interface AppFunctionVpcPlacement {
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  readonly securityGroups: ec2.ISecurityGroup[];
}

export interface AppFunctionProps {
  /** File name (without `.ts`) of the entry in functions/handlers/, e.g. `robot-ingest`. */
  readonly handler: string;
  readonly description?: string;
  readonly environment?: Record<string, string>;
  /** @default 10 seconds */
  readonly timeout?: Duration;
  /** @default 512 MB (arm64 cold starts shrink with memory, and the price per GB-second is the lower arm one) */
  readonly memorySize?: number;
  /** Set only for functions that talk to PostgreSQL; everything else stays outside the VPC. */
  readonly vpcPlacement?: AppFunctionVpcPlacement;
  /** Dead-letter queue for asynchronous invocations (IoT rules invoke asynchronously). */
  readonly deadLetterQueue?: sqs.IQueue;
  /** Extra files next to the bundle (e.g. SQL migrations). */
  readonly commandHooks?: ICommandHooks;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** Powertools/LOG_LEVEL; @default the `logLevel` context value, else INFO */
  readonly logLevel?: string;
}

/**
 * A Lambda function with the project's defaults: Node.js 24 on arm64, bundled by the locally installed esbuild
 * (no Docker) to minified ESM with source maps, active tracing, its own log group with a retention, and the
 * Powertools environment. The AWS SDK is bundled too, so the version we test is the version that runs.
 */
export class AppFunction extends Construct {
  readonly fn: NodejsFunction;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: AppFunctionProps) {
    super(scope, id);

    const entry = path.join(HANDLERS_DIR, `${props.handler}.ts`);
    if (!existsSync(entry)) {
      throw new Error(`AppFunction ${this.node.path}: no handler file at ${path.relative(REPO_ROOT, entry)}`);
    }

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      // Logs are diagnostics, not records: they go with the function.
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const logLevel = props.logLevel ?? String(this.node.tryGetContext('logLevel') ?? 'INFO');

    this.fn = new NodejsFunction(this, 'Function', {
      entry,
      handler: 'handler',
      description: props.description ?? `${props.handler} (lekiwi-heartbeat)`,
      runtime: RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      timeout: props.timeout ?? Duration.seconds(10),
      memorySize: props.memorySize ?? 512,
      tracing: lambda.Tracing.ACTIVE,
      logGroup: this.logGroup,
      depsLockFilePath: path.join(REPO_ROOT, 'package-lock.json'),
      projectRoot: REPO_ROOT,
      environment: {
        POWERTOOLS_SERVICE_NAME: props.handler,
        POWERTOOLS_METRICS_NAMESPACE,
        LOG_LEVEL: logLevel,
        POWERTOOLS_LOG_LEVEL: logLevel,
        // Stack traces through the bundled source maps.
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      ...(props.vpcPlacement
        ? {
            vpc: props.vpcPlacement.vpc,
            vpcSubnets: props.vpcPlacement.subnets,
            securityGroups: props.vpcPlacement.securityGroups,
          }
        : {}),
      ...(props.deadLetterQueue ? { deadLetterQueue: props.deadLetterQueue } : {}),
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node24',
        mainFields: ['module', 'main'],
        banner: ESM_REQUIRE_BANNER,
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        // esbuild's per-bundle size summary is noise in synth and test output; warnings and errors still show.
        logLevel: LogLevel.WARNING,
        // Everything is bundled (aws-jwt-verify, pg, Powertools, middy, zod and the AWS SDK v3 clients): the
        // runtime's preinstalled SDK is not the version we test, and is not promised to carry @aws-sdk/rds-signer.
        // pg-native is pg's optional native binding, never loaded.
        externalModules: ['pg-native'],
        ...(props.commandHooks ? { commandHooks: props.commandHooks } : {}),
      },
    });

    acknowledgeFunctionDefaults(this, Boolean(props.vpcPlacement));
  }
}

/**
 * The findings every AppFunction carries by construction, acknowledged once here with the reason.
 */
function acknowledgeFunctionDefaults(scope: Construct, inVpc: boolean): void {
  const partition = '<AWS::Partition>';
  Validations.of(scope).acknowledge({
    id: `AwsSolutions-IAM4[Policy::arn:${partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]`,
    reason:
      'AWSLambdaBasicExecutionRole only allows writing to CloudWatch Logs; it is the AWS-maintained baseline for every Lambda function.',
  });
  if (inVpc) {
    Validations.of(scope).acknowledge({
      id: `AwsSolutions-IAM4[Policy::arn:${partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]`,
      reason:
        'AWSLambdaVPCAccessExecutionRole only allows managing the ENIs Lambda needs to place the function in the VPC; AWS maintains it.',
    });
  }
  Validations.of(scope).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'Resource "*" is required by actions without resource-level permissions: xray:PutTraceSegments/PutTelemetryRecords (active tracing), ' +
      'ec2 network-interface actions for VPC functions, and dynamodb:ListStreams for stream event source mappings.',
  });
}
