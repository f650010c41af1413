import './process-env.js';
import { hostname } from 'node:os';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DescribeTableCommand, DynamoDBClient, ResourceNotFoundException } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import type {
  APIGatewayProxyResultV2,
  DynamoDBBatchResponse,
  DynamoDBStreamEvent,
  KinesisStreamBatchResponse,
  KinesisStreamEvent,
} from 'aws-lambda';
import pg from 'pg';
import { CLOUD_COMMAND_TOPICS, INGEST_ACK_TOPICS, TOPIC_RULES, topics } from '../schemas/topics.js';
import type { ClientAction } from '../schemas/api.js';
import { HEAD_RECORD_PATTERNS, PROJECTED_RECORD_PATTERNS, RETIREMENT_RECORD_PATTERNS, type FilterPattern } from '../schemas/stream-filters.js';
import { CertificateAuthority } from './certificate-authority.js';
import { LOCAL_AWS, startDynamoDbLocal } from './dynamodb-local.js';
import { localDashboard } from './dashboard-host.js';
import { createFileDeadLetters, DEAD_LETTER_FILE_ENV, projectorDeadLetterFile } from './file-dead-letters.js';
import { startHttpGateway, type HttpGateway } from './http-gateway.js';
import { startIotBroker, type IotBroker } from './iot-broker.js';
import { startIotDataPlane, type IotDataPlane } from './iot-data-plane.js';
import { startKinesisPoller, type KinesisPoller } from './kinesis-poller.js';
import { startKinesisStandIn, type KinesisStandIn } from './kinesis-stand-in.js';
import { LocalJwtIssuer } from './jwt-issuer.js';
import { loadFunction, type FunctionName } from './lambda-runtime.js';
import { startSchedule, teleoperationExpiryIntervalMs } from './scheduled-function.js';
import { startLocalPostgres, type LocalPostgres } from './local-postgres.js';
import {
  assertPortFree,
  claimStateDir,
  LocalCloudError,
  rememberDynamoDbPid,
  statePaths,
  type StatePaths,
} from './local-state.js';
import { startStreamPoller, type StreamPoller } from './stream-poller.js';
import { Supervisor } from './supervisor.js';
import { FileStreamCheckpoints } from './stream-checkpoints.js';
import { createConnectionsTable, createDeploymentsTable, createEventLogTable, createFactoryTable, enableDeploymentsStream, LOCAL_DEPLOYMENTS_TABLE, LOCAL_FACTORY_TABLE } from './tables.js';
import { isDeploymentRoute, localDeployments } from './deployment-orchestration.js';
import { DEPLOYMENT_HEAD_RECORD_PATTERNS, DEPLOYMENT_UPDATE_RECORD_PATTERNS } from '../schemas/stream-filters.js';
import { localFleetProvisioning } from './fleet-provisioning.js';
import { localCertificateRegistry, localCertificateRotationRule } from './certificate-rotation.js';
import { localJobEventsRule } from './job-events.js';
import { DynamoEventLog } from '../functions/adapters/dynamo-event-log.js';
import { ROTATION_COMMAND_TOPICS } from '../schemas/rotation.js';
import { ARTIFACT_COMMAND_TOPICS } from '../schemas/deployments.js';
import { ARTIFACT_OBJECT_PATH_PREFIX, LocalArtifactStore } from './artifact-store.js';
import { localArtifactUrlsRule } from './artifact-urls.js';
import { ThingRegistry } from './thing-registry.js';
import { startWebSocketGateway, type WebSocketGateway } from './websocket-gateway.js';
import { openLocalIotJobs, type LocalIotJobs } from './iot-jobs/jobs-service.js';

/**
 * The fleet backend on one machine, with no AWS account: the very handler modules CDK deploys, with AWS's managed
 * parts replaced by local stand-ins — DynamoDB Local (event log and its stream), PGlite or a PostgreSQL server (read
 * models), an MQTT broker with mTLS, the thing policy, the topic rules and the data plane's Publish (IoT Core), stream
 * pollers (Lambda's event source mappings), HTTP and WebSocket gateways with `@connections` (API Gateway), and a JWT
 * issuer (Cognito).
 */
export interface LocalCloudOptions {
  readonly stateDir: string;
  readonly host?: string;
  readonly httpPort?: number;
  readonly wsPort?: number;
  readonly mqttPort?: number;
  /** The stand-ins' ports, always on 127.0.0.1; 0 or absent: a free port chosen at start (see endpoints.json). */
  readonly dynamodbPort?: number;
  readonly pglitePort?: number;
  readonly iotDataPort?: number;
  readonly kinesisPort?: number;
  /** A PostgreSQL server for the read models; PGlite under the state dir when absent. */
  readonly databaseUrl?: string;
  /** The built dashboard served at `/` (DASHBOARD_DIST); `dashboard/dist` by default. npm start builds it first. */
  readonly dashboardDir?: string;
  /** IoT Core raises keep-alives below 30 s to 30 s; tests lower it to see a dead robot sooner. */
  readonly minKeepAliveSeconds?: number;
  readonly onProgress?: (event: ProgressEvent) => void;
  /**
   * A part died and could not be brought back (DynamoDB Local past its restarts, PGlite or the Kinesis stand-in no
   * longer answering): the local cloud has stopped itself; the message says what died and what to do.
   */
  readonly onFatal?: (message: string) => void;
  /** Where the stand-ins' own warnings go (the handlers log through Powertools to stdout). */
  readonly log?: (entry: { level: string; message: string; [detail: string]: unknown }) => void;
}

export type ProgressEvent =
  | { readonly step: string; readonly phase: 'start' }
  | { readonly step: string; readonly phase: 'done'; readonly ms: number; readonly detail?: string };

export interface LocalEndpoints {
  readonly stateDir: string;
  readonly pageUrl: string;
  readonly apiUrl: string;
  readonly webSocketUrl: string;
  readonly mqttUrl: string;
  readonly mqttHost: string;
  readonly mqttPort: number;
  /** IoT Core's data plane (`Publish`) stand-in, where the http-api sends commands to robots. */
  readonly iotDataUrl: string;
  readonly caFile: string;
  readonly tokens: { readonly admin: string; readonly engineer: string; readonly operator: string };
  readonly jwtIssuer: string;
  readonly jwtAudience: string;
  readonly dynamodbEndpoint: string;
  readonly eventLogTable: string;
  readonly connectionsTable: string;
  /** The factory's allow-list (`npm run factory`), read by the pre-provisioning hook. */
  readonly factoryTable: string;
  readonly databaseUrl: string;
  readonly database: 'pglite' | 'server';
  readonly pid: number;
}

export interface LocalCloud {
  readonly endpoints: LocalEndpoints;
  readonly paths: StatePaths;
  readonly broker: IotBroker;
  readonly ca: CertificateAuthority;
  /** AWS IoT Jobs' control plane (the deployment orchestrator's JobsControl port), kept in the state dir. */
  readonly jobs: LocalIotJobs;
  /** Releases and their objects (`npm run release` writes here too); its URLs are served by the HTTP gateway. */
  readonly artifacts: LocalArtifactStore;
  /** Resolves once the rules and the stream consumers have handled everything so far (tests, benchmarks). */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export const EVENT_LOG_TABLE = 'heartbeat-event-log';
/** The ordered ingest channel (a Kinesis stream in AWS): every robot message, keyed by robot. */
export const INGEST_STREAM = 'heartbeat-ingest';
/** Shards of the local ingest stream: robots spread over them, each robot's messages on one. */
const INGEST_SHARDS = 2;
/** How long the ingest stream may answer nothing before the supervisor asks it directly. */
const INGEST_SILENCE_MS = 20_000;
export const CONNECTIONS_TABLE = 'heartbeat-connections';
export const JWT_AUDIENCE = 'lekiwi-heartbeat-local';
/** Where `npm start` builds the dashboard (dashboard/vite.config.ts). */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../dashboard/dist', import.meta.url));
/** `vite --config dashboard/vite.config.ts` serves the page here and passes sign-in and the API to the local cloud. */
const VITE_DEV_ORIGINS = ['http://localhost:5173', 'http://127.0.0.1:5173'];

export async function startLocalCloud(options: LocalCloudOptions): Promise<LocalCloud> {
  const host = options.host ?? '127.0.0.1';
  const httpPort = options.httpPort ?? 3000;
  const wsPort = options.wsPort ?? 3001;
  const mqttPort = options.mqttPort ?? 8883;
  const paths = statePaths(options.stateDir);
  const log = options.log ?? defaultLog;
  const progress = options.onProgress ?? (() => {});
  const step = async <T>(name: string, work: () => Promise<T>, detail?: (value: T) => string): Promise<T> => {
    progress({ step: name, phase: 'start' });
    const started = Date.now();
    const value = await work();
    progress({ step: name, phase: 'done', ms: Date.now() - started, ...(detail ? { detail: detail(value) } : {}) });
    return value;
  };

  await assertPortFree(httpPort, host, 'HTTP: page and /api/v2', 'HTTP_PORT');
  await assertPortFree(wsPort, host, 'WebSocket', 'WS_PORT');
  await assertPortFree(mqttPort, host, 'MQTT', 'MQTT_PORT');
  for (const [port, what, variable] of [
    [options.dynamodbPort, 'DynamoDB Local', 'DYNAMODB_PORT'],
    [options.databaseUrl ? undefined : options.pglitePort, 'embedded PostgreSQL (PGlite)', 'PGLITE_PORT'],
    [options.iotDataPort, 'IoT data plane', 'IOT_DATA_PORT'],
    [options.kinesisPort, 'Kinesis stand-in', 'KINESIS_PORT'],
  ] as const) {
    if (port) await assertPortFree(port, '127.0.0.1', what, variable);
  }
  const releaseStateDir = await claimStateDir(paths);

  // Everything started so far, stopped in reverse order on failure or at stop().
  const stops: (() => Promise<void>)[] = [releaseStateDir];
  // A part that dies is restarted on its state, or the whole local cloud stops, loudly: never silently.
  const supervisor = new Supervisor({
    log,
    onFatal: (message) => {
      log({ level: 'error', message: `The local cloud is stopping: ${message}` });
      void stopAll().finally(() => options.onFatal?.(message));
    },
  });
  let stopping: Promise<void> | undefined;
  const stopAll = () => (stopping ??= stopEverything());
  const stopEverything = async () => {
    supervisor.stop();
    for (const stop of stops.splice(0).reverse()) {
      await stop().catch((error: unknown) => log({ level: 'warn', message: 'stopping a part of the local cloud failed', error: String(error) }));
    }
  };

  try {
    // The quick checks of the state dir first: a damaged CA or registry should not wait for Java and PostgreSQL.
    const publicHost = host === '0.0.0.0' ? 'localhost' : host === '127.0.0.1' ? 'localhost' : host;
    const pageUrl = `http://${publicHost}:${httpPort}/`;
    const jwtIssuer = `http://localhost:${httpPort}`;
    const { ca, issuer, serverCertificate, tokens } = await step('certificate authority, thing registry and dev tokens', async () => {
      const ca = await CertificateAuthority.openOrCreate(paths.ca);
      const serverCertificate = await ca.issueServerCertificate(['localhost', '127.0.0.1', '::1', hostname()]);
      await writeFile(join(paths.ca, 'server.pem'), serverCertificate.certificatePem);
      const issuer = await LocalJwtIssuer.openOrCreate(paths.jwt, { issuer: jwtIssuer, audience: JWT_AUDIENCE });
      const tokens = await issuer.writeDevTokens(paths.tokens);
      await ThingRegistry.in(paths.root).list(); // a damaged registry stops the start here, not at the first connect
      return { ca, issuer, serverCertificate, tokens };
    });
    // The artifact store's URLs point at the HTTP gateway, whose port is known once it listens.
    let artifactBaseUrl: string | undefined;
    const artifacts = await step('artifact store (releases)', () =>
      LocalArtifactStore.open({
        root: paths.artifacts,
        baseUrl: () => {
          if (!artifactBaseUrl) throw new Error('the HTTP gateway is not up yet');
          return artifactBaseUrl;
        },
      }),
    );

    // Commands to robots (POST /discover) go through IoT Core's data plane; the broker it publishes into starts
    // later (it needs the rule handlers), and until then a publish is refused as IoT Core would refuse it: 503.
    let brokerForCommands: IotBroker | undefined;
    /** The local IoT Jobs once it runs (issue 12): the deployment routes and orchestrator reach it through this. */
    let jobsForDeployments: LocalIotJobs | undefined;
    const dataPlane: IotDataPlane = await step('IoT data plane (Publish)', () =>
      startIotDataPlane({
        port: options.iotDataPort ?? 0,
        host: '127.0.0.1',
        // Commands from the HTTP API, and the ingest consumer's acknowledgements.
        allowedTopics: [...CLOUD_COMMAND_TOPICS, ...INGEST_ACK_TOPICS, ...ROTATION_COMMAND_TOPICS, ...ARTIFACT_COMMAND_TOPICS],
        publish: async (topic, payload) => {
          if (!brokerForCommands) throw new Error('the MQTT broker is not up yet');
          await brokerForCommands.publish(topic, payload);
        },
        log,
      }),
    );
    stops.push(() => dataPlane.stop());

    const dynamo = await step('DynamoDB Local (event log)', async () => {
      // The port is fixed by the first start, so a restart keeps every client's endpoint valid.
      let port: number | undefined = options.dynamodbPort || undefined;
      const part = await supervisor
        .supervise({
          name: 'DynamoDB Local (event log)',
          start: async () => {
            const started = await startDynamoDbLocal({ ...(port ? { port } : {}), dbPath: paths.dynamodb, detached: true });
            port = started.port;
            return started;
          },
          onStarted: (started) => rememberDynamoDbPid(paths, started.pid),
          advice: `Check that Java 17 runs (java -version) and that the disk holding ${paths.dynamodb} is not full, then start the local cloud again (npm start). If it keeps dying, the database in ${paths.dynamodb} may be damaged: delete that folder to start with an empty event log.`,
        })
        .catch((error: unknown) => {
          throw new LocalCloudError(
            `${(error as Error).message}\nIf Java 17 is installed, the database in ${paths.dynamodb} may be damaged: delete that folder to start with an empty event log.`,
          );
        });
      stops.push(async () => {
        await part.stop();
        await rememberDynamoDbPid(paths, undefined);
      });
      return part.current();
    });
    const dynamoClient = new DynamoDBClient({ ...LOCAL_AWS, endpoint: dynamo.endpoint });
    stops.push(async () => dynamoClient.destroy());
    const eventLogStreamArn = await step('tables', () => ensureTables(dynamoClient));
    const deploymentsStreamArn = await step('deployments stream', () => ensureDeploymentsStream(dynamoClient));

    const postgres: LocalPostgres = await step(
      options.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : 'PostgreSQL (embedded PGlite)',
      () =>
        startLocalPostgres({
          dataDir: paths.postgres,
          ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
          ...(options.pglitePort ? { port: options.pglitePort } : {}),
        }),
      (db) => (db.applied.length > 0 ? `migrations applied: ${db.applied.join(', ')}` : 'schema current'),
    );
    stops.push(() => postgres.stop());
    const probePool = new pg.Pool({ connectionString: postgres.url, max: 1 });
    probePool.on('error', () => {}); // a probe connection cut is the probe's failure, reported by the supervisor
    stops.push(() => probePool.end());
    supervisor.watch({
      name: postgres.kind === 'pglite' ? 'PostgreSQL (embedded PGlite)' : 'PostgreSQL (DATABASE_URL)',
      probe: () => probePool.query('SELECT 1'),
      // PGlite answers one query at a time: the probe may wait behind a projector batch of 1,000 records.
      intervalMs: 10_000,
      timeoutMs: 30_000,
      advice:
        postgres.kind === 'pglite'
          ? `Stop the local cloud and start it again; if it fails again, delete ${paths.postgres} and run npm run rebuild-read-models.`
          : 'Check the PostgreSQL server at DATABASE_URL, then start the local cloud again.',
    });

    const ingestStream: KinesisStandIn = await step('ingest stream (Kinesis stand-in, kinesalite)', () =>
      startKinesisStandIn({
        directory: paths.kinesis,
        streamName: INGEST_STREAM,
        shardCount: INGEST_SHARDS,
        region: LOCAL_AWS.region,
        ...(options.kinesisPort ? { port: options.kinesisPort } : {}),
      }),
    );
    stops.push(() => ingestStream.stop());
    // kinesalite answers one request at a time: under a burst a probe waits behind thousands of puts. It is alive while
    // it answers anything (a put, a read); only when it has been silent does the probe ask it, and wait long.
    let ingestAnsweredAt = Date.now();
    const ingestAnswered = () => {
      ingestAnsweredAt = Date.now();
    };
    supervisor.watch({
      name: 'Kinesis stand-in (ingest stream)',
      probe: async () => {
        if (Date.now() - ingestAnsweredAt < INGEST_SILENCE_MS) return;
        await ingestStream.client.send(new DescribeStreamSummaryCommand({ StreamName: INGEST_STREAM }));
        ingestAnswered();
      },
      intervalMs: 10_000,
      timeoutMs: 30_000,
      advice: `Stop the local cloud and start it again; if it fails again, delete ${paths.kinesis} (robot messages not yet consumed are lost; agents send theirs again).`,
    });
    const projectorDeadLetters = createFileDeadLetters(projectorDeadLetterFile(paths.root));

    // The handlers read their configuration at import (cold start), as in Lambda: set it before the first load.
    Object.assign(process.env, {
      AWS_REGION: LOCAL_AWS.region,
      AWS_ACCESS_KEY_ID: LOCAL_AWS.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_AWS.credentials.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      // The SDK's per-service endpoint variable, from the service id "IoT Data Plane".
      AWS_ENDPOINT_URL_IOT_DATA_PLANE: dataPlane.url,
      EVENT_LOG_TABLE,
      CONNECTIONS_TABLE,
      DATABASE_URL: postgres.url,
      JWT_ISSUER: jwtIssuer,
      JWT_AUDIENCE,
      JWKS_URI: `${jwtIssuer}/.well-known/jwks.json`,
      WS_ENDPOINT: `http://127.0.0.1:${wsPort}`,
      [DEAD_LETTER_FILE_ENV]: projectorDeadLetters.path,
    });
    process.env.POWERTOOLS_SERVICE_NAME ??= 'heartbeat-local';
    process.env.POWERTOOLS_METRICS_NAMESPACE ??= 'LekiwiHeartbeatLocal';

    const functions = await step('Lambda handlers', async () => ({
      httpApi: await loadFunction<unknown, APIGatewayProxyResultV2>('http-api'),
      authorizer: await loadFunction('ws-authorizer'),
      connect: await loadFunction('ws-connect'),
      disconnect: await loadFunction('ws-disconnect'),
      subscribe: await loadFunction('ws-subscribe'),
      unsubscribe: await loadFunction('ws-unsubscribe'),
      wsDefault: await loadFunction('ws-default'),
      projector: await loadFunction<DynamoDBStreamEvent, DynamoDBBatchResponse>('stream-projector'),
      broadcaster: await loadFunction<DynamoDBStreamEvent, DynamoDBBatchResponse>('stream-broadcaster'),
      coalescer: await loadFunction<DynamoDBStreamEvent, DynamoDBBatchResponse>('stream-coalescer'),
      deploymentChanges: await loadFunction<DynamoDBStreamEvent, DynamoDBBatchResponse>('stream-deployment-changes'),
      ingest: await loadFunction<KinesisStreamEvent, KinesisStreamBatchResponse>('robot-ingest'),
      teleoperationExpiry: await loadFunction('teleoperation-expiry'),
    }));

    /** The ingest consumer's work so far, for `/health` and bench:ingest (events per invocation). */
    const ingestWork = { invocations: 0, records: 0 };
    const webSocketUrl = `ws://${publicHost}:${wsPort}`;
    // The dashboard and its sign-in, on the origins a browser may use for this port (and Vite's dev server's).
    const dashboard = localDashboard({
      distDir: options.dashboardDir ?? DEFAULT_DASHBOARD_DIR,
      origins: [...new Set([new URL(pageUrl).origin, `http://localhost:${httpPort}`, `http://127.0.0.1:${httpPort}`, ...VITE_DEV_ORIGINS])],
      webSocketUrl,
      issuer,
    });
    // Deployments (issue 12): the http-api's deployment routes and the deployment-orchestrator's stream consumer.
    const deployments = localDeployments({
      dynamoClient,
      eventLogTable: EVENT_LOG_TABLE,
      deploymentsTable: LOCAL_DEPLOYMENTS_TABLE,
      databaseUrl: postgres.url,
      releases: artifacts,
      jobs: () => jobsForDeployments,
      robotCommands: { send: async () => Promise.reject(new Error('the deployment routes send no robot commands')) },
    });
    stops.push(() => deployments.stop());
    const http: HttpGateway = await step('HTTP gateway (dashboard, sign-in, /api/v2, JWKS)', () =>
      startHttpGateway({
        port: httpPort,
        host,
        // /api/v2/deployments… on the in-process IoT Jobs and artifact store (local/deployment-orchestration.ts).
        integration: (event) => (isDeploymentRoute(event) ? deployments.httpApi(event as never) : functions.httpApi(event)),
        authorizer: { issuer: jwtIssuer, audience: [JWT_AUDIENCE] },
        jwks: () => issuer.jwks(),
        health: () => supervisor.health(),
        healthDetails: async () => ({
          ingest: { ...ingestWork },
          setAside: { streamProjector: await projectorDeadLetters.count() },
        }),
        extraRoutes: dashboard.routes,
        // The presigned-URL stand-ins of the artifact store (S3's GetObject URLs in AWS).
        prefixRoutes: { [`GET ${ARTIFACT_OBJECT_PATH_PREFIX}`]: (request) => artifacts.serve(request) },
        site: dashboard.site,
        log,
      }),
    );
    stops.push(() => http.stop());
    artifactBaseUrl = `http://${publicHost}:${http.port}`;

    // One route per client action of schemas/api.ts, as infra declares them.
    const clientActionRoutes: Record<ClientAction, typeof functions.subscribe> = {
      subscribe: functions.subscribe,
      unsubscribe: functions.unsubscribe,
    };
    const ws: WebSocketGateway = await step('WebSocket gateway (+ @connections)', () =>
      startWebSocketGateway({
        port: wsPort,
        host,
        authorizer: functions.authorizer,
        connect: functions.connect,
        disconnect: functions.disconnect,
        routes: { ...clientActionRoutes, $default: functions.wsDefault },
        log,
      }),
    );

    // The IoT registry (things.json): the broker authenticates against it, RegisterThing and rotation write it, the
    // certificate retirer revokes and deactivates in it. One instance: its writes run one at a time.
    const things = ThingRegistry.in(paths.root);
    const pollers = await step('stream consumers (projector, broadcaster, coalescer)', async () => {
      const streams = new DynamoDBStreamsClient({ ...LOCAL_AWS, endpoint: dynamo.endpoint });
      stops.push(async () => streams.destroy());
      const consumer = async (
        name: string,
        handler: (event: DynamoDBStreamEvent) => Promise<DynamoDBBatchResponse>,
        batchSize: number,
        maximumRetryAttempts: number,
        mapping: { filters?: readonly FilterPattern[]; maximumBatchingWindowMs?: number; streamArn?: string } = {},
      ) =>
        startStreamPoller({
          client: streams,
          streamArn: mapping.streamArn ?? eventLogStreamArn,
          handler,
          batchSize,
          bisectBatchOnFunctionError: true,
          maximumRetryAttempts,
          filters: mapping.filters ?? PROJECTED_RECORD_PATTERNS,
          maximumBatchingWindowMs: mapping.maximumBatchingWindowMs ?? 0,
          checkpoints: await FileStreamCheckpoints.open(join(paths.streams, `${name}.json`), mapping.streamArn ?? eventLogStreamArn),
          onFailure: (records, error) =>
            log({ level: 'error', message: `${name}: records set aside after the last retry (the on-failure queue in AWS)`, count: records.length, error: String(error) }),
          log: (entry) => (entry.level === 'warn' || entry.level === 'error' ? log({ ...entry, source: name }) : undefined),
        });
      const started: StreamPoller[] = [
        // The read models never skip: a database that is down is retried until it is back (the projector itself
        // sets aside what it cannot parse). Live pushes may give up sooner: the dashboard reloads on reconnect.
        await consumer('stream-projector', functions.projector, 1000, -1),
        await consumer('stream-broadcaster', functions.broadcaster, 100, 5),
        // Coalesced telemetry (RobotsUpdated): every head write, gathered for up to a second, as in AWS.
        await consumer('stream-coalescer', functions.coalescer, 1000, 5, { filters: HEAD_RECORD_PATTERNS, maximumBatchingWindowMs: 1000 }),
        // Re-images and abandoned rotations (functions/app/retire-certificates.ts), the Lambda's use case on the local
        // registry. A re-image's certificate is already revoked by RegisterThing here (a no-op then); an abandoned
        // rotation's certificate is deactivated only by this consumer, as in AWS.
        await consumer('stream-certificate-retirer', await localCertificateRetirer(ca, things, dynamoClient), 100, -1, { filters: RETIREMENT_RECORD_PATTERNS }),
        // Deployments (issue 12): the robots' update events move each deployment on; an outcome is never skipped.
        await consumer('deployment-orchestrator', deployments.orchestrator, 100, -1, { filters: DEPLOYMENT_UPDATE_RECORD_PATTERNS }),
        // The deployments table's own stream: each committed head write → DeploymentChanged to `*` (as in AWS).
        await consumer('stream-deployment-changes', functions.deploymentChanges, 100, 2, { filters: DEPLOYMENT_HEAD_RECORD_PATTERNS, streamArn: deploymentsStreamArn }),
      ];
      stops.push(async () => {
        await Promise.all(started.map((poller) => poller.stop()));
      });
      return started;
    });

    const ingestPoller: KinesisPoller = await step('ingest consumer (robot-ingest on the ingest stream)', async () => {
      const poller = startKinesisPoller({
        client: ingestStream.client,
        streamArn: ingestStream.streamArn,
        handler: async (event) => {
          ingestAnswered();
          ingestWork.invocations += 1;
          ingestWork.records += event.Records.length;
          return functions.ingest(event);
        },
        batchSize: 500,
        bisectBatchOnFunctionError: true,
        maximumRetryAttempts: -1,
        checkpoints: await FileStreamCheckpoints.open(join(paths.streams, 'robot-ingest.json'), ingestStream.streamArn),
        onFailure: (records, error) =>
          log({ level: 'error', message: 'robot-ingest: records expired before they could be written (the on-failure queue in AWS)', count: records.length, error: String(error) }),
        log: (entry) => (entry.level === 'warn' || entry.level === 'error' ? log({ ...entry, source: 'robot-ingest' }) : undefined),
      });
      stops.push(() => poller.stop());
      return poller;
    });

    // AWS IoT Jobs (issue 12): its control plane (cloud.jobs), the Jobs MQTT API on the broker, and the notifications
    // and job events it publishes through the broker (so the job event rule sees them). Started once the broker is up.
    const jobs: LocalIotJobs = await step('IoT Jobs (stored jobs)', () =>
      openLocalIotJobs({
        stateDir: paths.root,
        publish: async (topic, payload) => {
          if (!brokerForCommands) throw new Error('the MQTT broker is not up yet');
          await brokerForCommands.publish(topic, payload);
        },
        thingExists: async (thingName) => (await things.lookup(thingName)) !== undefined,
        log,
      }),
    );
    const broker: IotBroker = await step('MQTT broker with mTLS (IoT Core)', async () => {
      // Every rule puts into the ingest stream, keyed by robot; the broker acknowledges a message only once it is there.
      const rules = Object.values(TOPIC_RULES).map((rule) => ({
        rule,
        put: async ({ partitionKey, data }: { partitionKey: string; data: Record<string, unknown> }) => {
          await ingestStream.put(partitionKey, data);
          ingestAnswered();
        },
      }));
      // Fleet provisioning by claim (issue 11): RegisterThing writes to the registry the broker authenticates against.
      const provisioning = localFleetProvisioning({
        stateDir: paths.root,
        ca,
        dynamo: dynamoClient,
        factoryTable: LOCAL_FACTORY_TABLE,
        eventLogTable: EVENT_LOG_TABLE,
        registry: things,
        log,
      });
      // Certificate rotation (issue 11, item 4): the same use case as the CertificateRotation Lambda, as a rule target.
      const rotation = localCertificateRotationRule({
        ca,
        registry: things,
        eventLog: new DynamoEventLog({ client: dynamoClient, tableName: EVENT_LOG_TABLE }),
        replies: {
          send: async (robotId, request, payload) => {
            if (!brokerForCommands) throw new Error('the MQTT broker is not up yet');
            await brokerForCommands.publish(topics.command(robotId, request), payload);
          },
        },
        log,
      });
      // IoT Jobs' job execution events (issue 12): an execution ended without the robot's word, into its log.
      const jobEvents = localJobEventsRule({ eventLog: new DynamoEventLog({ client: dynamoClient, tableName: EVENT_LOG_TABLE }), log });
      // Robots' download URLs for an install (issue 12): the ArtifactUrls Lambda's use case on the local store.
      const artifactUrls = localArtifactUrlsRule({
        store: artifacts,
        replies: {
          send: async (robotId, request, payload) => {
            if (!brokerForCommands) throw new Error('the MQTT broker is not up yet');
            await brokerForCommands.publish(topics.command(robotId, request), payload);
          },
        },
        log,
      });
      return startIotBroker({
        port: mqttPort,
        host,
        caCertificatePem: ca.certificatePem,
        serverCertificatePem: serverCertificate.certificatePem,
        serverPrivateKeyPem: serverCertificate.privateKeyPem,
        registry: things,
        claims: provisioning.claims,
        reservedTopicServices: provisioning.reservedTopicServices,
        reservedTopicPatternServices: [jobs.mqtt],
        rules: [...rules, rotation, jobEvents, artifactUrls],
        ...(options.minKeepAliveSeconds !== undefined ? { minKeepAliveSeconds: options.minKeepAliveSeconds } : {}),
        log,
      });
    });
    stops.push(async () => {
      await broker.stop();
      // The robots' last disconnects are in the stream: write them to the log before the consumers stop.
      await ingestPoller.idle({ timeoutMs: 10_000 }).catch((error: unknown) =>
        log({ level: 'warn', message: 'robot messages left in the ingest stream for the next start', error: String(error) }),
      );
    });
    brokerForCommands = broker;
    // Stopped before the broker (stops run in reverse): no timeout fires into a broker that is closing.
    stops.push(() => jobs.stop());
    await jobs.start();
    jobsForDeployments = jobs;
    // The EventBridge schedule of TeleoperationExpiry (issue 9: sessions of robots offline too long are closed).
    const expiry = startSchedule({ name: 'teleoperation-expiry', intervalMs: teleoperationExpiryIntervalMs(), run: () => functions.teleoperationExpiry({}), log });
    stops.push(() => expiry.stop());

    const endpoints: LocalEndpoints = {
      stateDir: paths.root,
      pageUrl,
      apiUrl: `http://${publicHost}:${http.port}/api/v2`,
      webSocketUrl: `ws://${publicHost}:${ws.port}`,
      mqttUrl: `mqtts://${publicHost}:${broker.port}`,
      mqttHost: publicHost,
      mqttPort: broker.port,
      iotDataUrl: dataPlane.url,
      caFile: join(paths.ca, 'ca.pem'),
      tokens,
      jwtIssuer,
      jwtAudience: JWT_AUDIENCE,
      dynamodbEndpoint: dynamo.endpoint,
      eventLogTable: EVENT_LOG_TABLE,
      connectionsTable: CONNECTIONS_TABLE,
      factoryTable: LOCAL_FACTORY_TABLE,
      databaseUrl: postgres.url,
      database: postgres.kind,
      pid: process.pid,
    };
    await writeFile(paths.endpoints, `${JSON.stringify(endpoints, null, 2)}\n`);
    // The live WebSocket closes early in the stop (stops run in reverse): dashboards should learn at once that their
    // data is no longer live, not after the robots' last messages are drained (they read the history on reconnect).
    stops.push(() => ws.stop());
    // Stopped first (stops run in reverse): from the moment the local cloud stops, nothing should connect to it.
    stops.push(() => rm(paths.endpoints, { force: true }));

    return {
      endpoints,
      paths,
      broker,
      ca,
      jobs,
      artifacts,
      async settle() {
        await jobs.idle(); // its notifications and job events go through the broker
        await broker.idle();
        await ingestPoller.idle({ timeoutMs: 30_000 });
        for (const poller of pollers) await poller.idle({ timeoutMs: 30_000 });
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** Creates the event log, connections and factory tables on first start; later starts find them in the persisted db. */
async function ensureTables(client: DynamoDBClient): Promise<string> {
  const streamArn = await describeStream(client, EVENT_LOG_TABLE);
  if (streamArn === '') throw new LocalCloudError(`Table ${EVENT_LOG_TABLE} has no stream; delete the state dir's dynamodb folder to recreate it.`);
  const eventLog = streamArn ?? (await createEventLogTable(client, EVENT_LOG_TABLE));
  for (const [tableName, create] of [
    [CONNECTIONS_TABLE, createConnectionsTable],
    [LOCAL_FACTORY_TABLE, createFactoryTable],
    [LOCAL_DEPLOYMENTS_TABLE, createDeploymentsTable],
  ] as const) {
    if ((await describeStream(client, tableName)) !== undefined) continue;
    try {
      await create(client, tableName);
    } catch (error) {
      if ((error as Error).name !== 'ResourceInUseException') throw error;
    }
  }
  return eventLog;
}

/** The deployments table's stream ARN, switching it on for a table an older state dir kept without one. */
async function ensureDeploymentsStream(client: DynamoDBClient): Promise<string> {
  const streamArn = await describeStream(client, LOCAL_DEPLOYMENTS_TABLE);
  if (streamArn === undefined) throw new LocalCloudError(`Table ${LOCAL_DEPLOYMENTS_TABLE} was not created`);
  return streamArn === '' ? enableDeploymentsStream(client, LOCAL_DEPLOYMENTS_TABLE) : streamArn;
}

/** The table's stream ARN ('' for a table without a stream), or undefined when there is no such table. */
async function describeStream(client: DynamoDBClient, tableName: string): Promise<string | undefined> {
  try {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    return Table?.LatestStreamArn ?? '';
  } catch (error) {
    if (error instanceof ResourceNotFoundException) return undefined;
    throw error;
  }
}

function defaultLog(entry: { level: string; message: string; [detail: string]: unknown }): void {
  if (entry.level === 'debug' || entry.level === 'info') return;
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), source: 'local-cloud', ...entry })}\n`);
}

/** The certificate retirer's stream handler on the local registry (loaded after the handlers' environment is set). */
async function localCertificateRetirer(ca: CertificateAuthority, things: ThingRegistry, dynamoClient: DynamoDBClient) {
  const { retireCertificatesInStreamBatch } = await import('../functions/adapters/stream-consumers.js');
  const deps = { certificates: localCertificateRegistry(ca, things), eventLog: new DynamoEventLog({ client: dynamoClient, tableName: EVENT_LOG_TABLE }) };
  return (event: DynamoDBStreamEvent) => retireCertificatesInStreamBatch(event.Records, deps);
}
