import { App, Tags, Validations, type Environment, type Stack } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ApiStack } from './stacks/api-stack.js';
import { IotStack } from './stacks/iot-stack.js';
import { StatefulStack } from './stacks/stateful-stack.js';

/** One deployment of the product: its stage name, target environment and dashboard origins. */
export interface StageOptions {
  readonly stage: string;
  /** Omitted: env-agnostic stacks (what `cdk synth` produces offline without credentials). */
  readonly env?: Environment;
  /** Origins allowed by CORS and as OAuth callbacks. @default the `dashboardOrigins` context, else localhost:5173 */
  readonly dashboardOrigins?: string[];
}

export interface HeartbeatStacks {
  readonly stateful: StatefulStack;
  readonly api: ApiStack;
  readonly iot: IotStack;
}

/** `-c dashboardOrigins=https://a,https://b` (or a JSON array in cdk.json). */
function dashboardOriginsFromContext(app: App): string[] {
  const raw: unknown = app.node.tryGetContext('dashboardOrigins');
  if (Array.isArray(raw)) return raw.map(String);
  if (typeof raw === 'string' && raw.trim() !== '') return raw.split(',').map((origin) => origin.trim());
  return ['http://localhost:5173'];
}

function resolved(app: App, options: StageOptions) {
  return {
    prefix: `LekiwiHeartbeat-${options.stage}`,
    common: options.env ? { env: options.env } : {},
    origins: options.dashboardOrigins ?? dashboardOriginsFromContext(app),
  };
}

function tag(stack: Stack, stage: string): void {
  Tags.of(stack).add('app', 'lekiwi-heartbeat');
  Tags.of(stack).add('stage', stage);
}

export function addStatefulStack(app: App, options: StageOptions): StatefulStack {
  const { prefix, common, origins } = resolved(app, options);
  const stack = new StatefulStack(app, `${prefix}-Stateful`, {
    ...common,
    description: 'Lekiwi Heartbeat: event log, connections, read-model database, dead-letter queues, users',
    dashboardOrigins: origins,
  });
  tag(stack, options.stage);
  return stack;
}

export function addApiStack(app: App, options: StageOptions, stateful: StatefulStack): ApiStack {
  const { prefix, common, origins } = resolved(app, options);
  const stack = new ApiStack(app, `${prefix}-Api`, {
    ...common,
    description: 'Lekiwi Heartbeat: HTTP and WebSocket APIs, stream consumers, migrations',
    eventLog: stateful.eventLog,
    connections: stateful.connections,
    vpc: stateful.vpc,
    dbSubnets: stateful.dbSubnets,
    dbClientSecurityGroup: stateful.dbClientSecurityGroup,
    proxy: stateful.proxy,
    projectorDlq: stateful.projectorDlq,
    broadcasterDlq: stateful.broadcasterDlq,
    userPool: stateful.userPool,
    dashboardClient: stateful.dashboardClient,
    dashboardOrigins: origins,
  });
  tag(stack, options.stage);
  return stack;
}

export function addIotStack(app: App, options: StageOptions, stateful: StatefulStack): IotStack {
  const { prefix, common } = resolved(app, options);
  const stack = new IotStack(app, `${prefix}-Iot`, {
    ...common,
    description: 'Lekiwi Heartbeat: thing types, thing policy, topic rules and the ingest stream consumer',
    eventLog: stateful.eventLog,
    ingestStream: stateful.ingestStream,
    ingestDlq: stateful.ingestDlq,
    ruleErrorDlq: stateful.iotRuleErrorDlq,
  });
  tag(stack, options.stage);
  return stack;
}

/**
 * The three stacks of one stage. The stateful stack comes first; the API and IoT stacks receive its constructs
 * through props and depend on it alone (CDK turns the references into exports and imports), never on each other.
 */
export function buildHeartbeat(app: App, options: StageOptions): HeartbeatStacks {
  const stateful = addStatefulStack(app, options);
  return { stateful, api: addApiStack(app, options, stateful), iot: addIotStack(app, options, stateful) };
}

/** Registers cdk-nag's AwsSolutions pack: an unacknowledged error fails synthesis (cdk-nag 3 is a validation plugin). */
export function addNagChecks(app: App): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
}

/**
 * The app as `cdk synth` builds it. Stage from `-c stage=…` or HEARTBEAT_STAGE (default `dev`); account and region
 * from `-c account=… -c region=…` or the CLI's CDK_DEFAULT_ACCOUNT/REGION, else env-agnostic.
 */
export function createApp(app: App = new App()): { app: App; stacks: HeartbeatStacks } {
  const stage = String(app.node.tryGetContext('stage') ?? process.env.HEARTBEAT_STAGE ?? 'dev');
  const account = (app.node.tryGetContext('account') as string | undefined) ?? process.env.CDK_DEFAULT_ACCOUNT;
  const region = (app.node.tryGetContext('region') as string | undefined) ?? process.env.CDK_DEFAULT_REGION;
  const env = account && region ? { account, region } : undefined;

  const stacks = buildHeartbeat(app, env ? { stage, env } : { stage });
  addNagChecks(app);
  return { app, stacks };
}
