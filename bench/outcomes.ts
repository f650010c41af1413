/**
 * `npm run bench:outcomes [-- --robots 25,50,100]`: a whole batch's robots reporting their outcome at the same moment
 * to the deployment orchestrator (issue 12: a rollback deployment is one batch of up to 1,000 robots, and a batch of
 * five finishes within a second). Each robot's word goes into the deployment's inbox and is folded into the head by
 * group commits (functions/app/deployments/orchestrator.ts `foldInbox`); this prints what that costs on DynamoDB
 * Local: wall time, head writes, transactions tried and cancelled, round trips.
 *
 * DynamoDB Local runs requests one at a time, so the wall time here is mostly the count of round trips; against
 * DynamoDB proper the head's contention (transactions cancelled) is what grows with the batch.
 */
import '../local/process-env.js';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDeploymentStore } from '../functions/adapters/dynamo-deployments.js';
import { newDeploymentId } from '../functions/app/deployments/deployment-ids.js';
import { onRobotUpdate, type UpdateEvent } from '../functions/app/deployments/on-robot-update.js';
import { plannedItem, runPendingEffects, type OrchestratorDependencies } from '../functions/app/deployments/orchestrator.js';
import { startDeployment } from '../functions/domain/deployment.js';
import { planRollback } from '../functions/domain/deployment-plan.js';
import { LOCAL_AWS, startDynamoDbLocal } from '../local/dynamodb-local.js';
import { startLocalIotJobs } from '../local/iot-jobs/jobs-service.js';
import { createDeploymentsTable } from '../local/tables.js';
import { DeploymentStrategy } from '../schemas/deployments.js';
import { countRequests } from './dynamo-requests.js';

const USAGE = `Usage: npm run bench:outcomes -- [--robots 25,50,100]

  --robots <n,n,…>  batch sizes to measure, one deployment each (default 25,50,100; each at most 1000)
  --help, -h        this help`;

let values;
try {
  ({ values } = parseArgs({ options: { robots: { type: 'string', default: '25,50,100' }, help: { type: 'boolean', short: 'h', default: false } }, strict: true }));
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const sizes = values.robots.split(',').map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 1_000)) {
  process.stderr.write(`--robots must be whole numbers from 1 to 1000, comma-separated; got ${values.robots}\n\n${USAGE}\n`);
  process.exit(2);
}

const dynamo = await startDynamoDbLocal();
// Sockets for a whole batch at once (the SDK's default of 50 would queue the rest and warn).
const client = new DynamoDBClient({ ...LOCAL_AWS, endpoint: dynamo.endpoint, requestHandler: { httpsAgent: { maxSockets: 1_000 }, httpAgent: { maxSockets: 1_000 } } });
const requests = countRequests(client);
const jobs = await startLocalIotJobs({ publish: async () => {}, log: () => {} });
let ok = true;
try {
  const tableName = `bench-deployments-${randomUUID().slice(0, 8)}`;
  await createDeploymentsTable(client, tableName);
  const store = new DynamoDeploymentStore({ client, tableName });
  const deps: OrchestratorDependencies = {
    store,
    jobs,
    releases: { getRelease: async () => null },
    queueUpdate: async () => {},
    now: () => new Date(),
  };
  process.stdout.write(`Outcomes of one batch arriving at once, DynamoDB Local at ${dynamo.endpoint}\n\n`);
  process.stdout.write('robots  wall      head writes  transactions tried  cancelled  round trips\n');
  // The first, unmeasured, warms DynamoDB Local's JVM.
  for (const [index, n] of [Math.min(5, sizes[0]!), ...sizes].entries()) {
    const deploymentId = newDeploymentId(new Date());
    const robotIds = Array.from({ length: n }, (_, i) => `lekiwi-B${String(index).padStart(2, '0')}${String(i).padStart(4, '0')}`);
    const strategy = DeploymentStrategy.parse({ canary: 0, batchSize: 1_000 });
    const plan = planRollback(robotIds, '1.0.0', strategy);
    const started = startDeployment({
      deploymentId,
      kind: 'deploy',
      parentDeploymentId: null,
      release: { version: '1.1.0', manifestSha256: 'a'.repeat(64), fileCount: 1, totalBytes: 1 },
      strategy,
      targets: { robotIds },
      note: null,
      createdBy: 'bench',
      at: new Date().toISOString(),
      batchSizes: plan.batches.map((b) => b.length),
      canary: false,
      held: 0,
    });
    await store.create({ head: started.head, events: started.events, effects: started.effects, batches: plan.batches, robots: plan.robots.map(plannedItem) });
    await runPendingEffects(deps, deploymentId);
    const jobId = `${deploymentId}-b0`;
    const at = new Date().toISOString();
    const before = (await store.read(deploymentId))!.revision;
    requests.reset();
    const t = performance.now();
    await Promise.all(
      robotIds.map((robotId) =>
        onRobotUpdate(deps, {
          eventId: `upd-${robotId}`,
          robotId,
          at,
          version: 1,
          type: 'RobotUpdateSucceeded',
          data: { deploymentId, jobId, version: '1.1.0', kind: 'deploy', fromVersion: '1.0.0', filesFetched: 1, bytesFetched: 1, durationMs: 1 },
        } as UpdateEvent),
      ),
    );
    const wall = performance.now() - t;
    const seen = requests.snapshot();
    const stored = (await store.read(deploymentId))!;
    const counted = stored.head.counts.succeeded;
    if (counted !== n || stored.head.state !== 'completed') {
      ok = false;
      process.stderr.write(`${n} robots: ${counted} counted, deployment ${stored.head.state}: expected all ${n}, completed\n`);
    }
    if (index === 0) continue;
    const tried = seen.byOperation.get('TransactWriteItems') ?? 0;
    const trips = [...seen.byOperation.values()].reduce((sum, count) => sum + count, 0);
    process.stdout.write(
      `${String(n).padEnd(8)}${`${(wall / 1000).toFixed(2)} s`.padEnd(10)}${String(stored.revision - before).padEnd(13)}${String(tried).padEnd(20)}${String(seen.cancelled).padEnd(11)}${trips}\n`,
    );
  }
} catch (error) {
  ok = false;
  process.stderr.write(`\nbench:outcomes failed: ${(error as Error).stack ?? String(error)}\n`);
} finally {
  await jobs.stop();
  client.destroy();
  await dynamo.stop();
}
process.exit(ok ? 0 : 1);
