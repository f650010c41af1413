import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { MqttLink } from '../agent/adapters/mqtt-link.js';
import type { Logger } from '../agent/adapters/json-log.js';
import { ProvisioningStore } from '../agent/adapters/provisioning-store.js';
import { checkClaimCredentials, checkOwnCredentials, readAgentConfig, type AgentConfig, type ProvisioningSettings } from '../agent/config.js';
import { needsFirstBoot } from '../agent/core/provisioning.js';
import { ensureInstalled, FirstBoot } from '../agent/provisioning-driver.js';
import { DynamoFactoryRegistry } from '../functions/adapters/dynamo-factory-registry.js';
import { registerSerials } from '../functions/app/provisioning/register-serials.js';
import { provisioningTemplateName } from '../schemas/provisioning.js';
import type { RobotModel } from '../schemas/robot-id.js';
import { openOrIssueLocalClaim } from './claim-certificates.js';
import type { LocalCloud } from './cloud.js';
import { LOCAL_AWS } from './dynamodb-local.js';
import type { ThingRegistry } from './thing-registry.js';

/**
 * The simulated fleet's zero-touch provisioning (issue 11): each simulated robot is set up as the factory sets up a
 * real one and runs the agent's real first boot against the local IoT Core.
 *
 * - Its serial (`SIM001` of `lekiwi-SIM001`) is registered in the factory table under the local batch of its model,
 *   `sim-lekiwi` or `sim-xle` (registering again changes nothing); the batch's claim is the local cloud's
 *   (`<stateDir>/claims/<batch>`, local/claim-certificates.ts) and recorded as the batch's, as `factory bundle` does.
 * - Its agent.json (`<stateDir>/certs/<thing>/agent.json`) is what a boot bundle gives a robot: the claim, the
 *   template, the model and batch, the serial from a file; no certificate of its own.
 * - The first boot is agent/provisioning-driver.ts `FirstBoot` (CreateCertificateFromCsr, RegisterThing through the
 *   pre-provisioning hook) with the agent's ProvisioningStore in `<agent stateDir>/provisioning`; the caller confirms
 *   it once the robot's own certificate connects (`RobotProvisioned`, then `RobotConnected`).
 *
 * INVARIANTS: a robot provisioned in the state dir keeps its certificate across restarts (its record says
 * `provisioned`, nothing is asked of the cloud); a first boot cut short resumes from its stored step; a robot of an
 * older state dir, certified straight by the local CA, is left as it is.
 */

/** The local batch a simulated robot of this model belongs to. */
export function simulatedBatchId(model: RobotModel): string {
  return `sim-${model}`;
}

export interface SimulatedRobotSetup {
  readonly thingName: string;
  readonly model: RobotModel;
  readonly serial: string;
  readonly configFile: string;
}

export function simulatedRobotSetup(stateDir: string, thingName: string): SimulatedRobotSetup {
  const dash = thingName.indexOf('-');
  const model = thingName.slice(0, dash) as RobotModel;
  return { thingName, model, serial: thingName.slice(dash + 1), configFile: join(stateDir, 'certs', thingName, 'agent.json') };
}

/** The robot's agent config; with `provisioning`, to be run through `provisionSimulatedRobot` before it starts. */
export type SimulatedRobotState =
  /** Certified straight by the local CA (a state dir from before provisioning by claim): start it as it is. */
  | { readonly kind: 'direct'; readonly config: AgentConfig }
  /** Set up for provisioning by claim (provisioned already, or not yet). */
  | { readonly kind: 'claim'; readonly config: AgentConfig & { readonly provisioning: ProvisioningSettings } };

/** What the state dir holds for this robot: a config of either kind, or nothing (it needs `setUpForClaim`). */
export async function simulatedRobotState(setup: SimulatedRobotSetup, registry: ThingRegistry): Promise<SimulatedRobotState | undefined> {
  if (!(await exists(setup.configFile))) return undefined;
  const config = await readAgentConfig(setup.configFile);
  if (config.provisioning) return { kind: 'claim', config: { ...config, provisioning: config.provisioning } };
  if ((await registry.lookup(setup.thingName)) === undefined) return undefined;
  await checkOwnCredentials(config);
  return { kind: 'direct', config };
}

/**
 * Registers the serials in their model's local batch and makes sure the batch's claim is issued and recorded as the
 * batch's in the factory table; then writes each robot's boot-bundle-like agent.json. Returns the claim configs.
 */
export async function setUpForClaim(
  cloud: LocalCloud,
  robots: readonly SimulatedRobotSetup[],
): Promise<Map<string, AgentConfig & { readonly provisioning: ProvisioningSettings }>> {
  const stateDir = cloud.paths.root;
  const configs = new Map<string, AgentConfig & { readonly provisioning: ProvisioningSettings }>();
  if (robots.length === 0) return configs;
  const client = new DynamoDBClient({ ...LOCAL_AWS, endpoint: cloud.endpoints.dynamodbEndpoint });
  try {
    const factory = new DynamoFactoryRegistry({ client, tableName: cloud.endpoints.factoryTable });
    const models = [...new Set(robots.map((robot) => robot.model))];
    for (const model of models) {
      const batchId = simulatedBatchId(model);
      const serials = robots.filter((robot) => robot.model === model).map((robot) => robot.serial);
      const report = await registerSerials(factory, { batchId, model, serials, now: () => new Date() });
      const problems = [...report.conflicts.map((c) => `${c.serial}: ${c.problem}`), ...report.failed.map((f) => `${f.serial}: ${f.error}`)];
      if (problems.length > 0) {
        throw new Error(`registering the simulated robots in batch ${batchId} failed (${problems.join('; ')}); start again, or use a new LOCAL_STATE_DIR`);
      }
      const claim = await openOrIssueLocalClaim(stateDir, batchId);
      const recorded = await factory.addClaimCertificate(batchId, model, claim.certificateId, new Date());
      if (recorded.status === 'model-conflict') throw new Error(`batch ${batchId} in the factory table is a batch of ${recorded.batch.model}, not ${model}: use a new LOCAL_STATE_DIR`);
      const claimDir = join(stateDir, 'claims', batchId);
      for (const robot of robots.filter((r) => r.model === model)) {
        configs.set(robot.thingName, await writeClaimConfig(cloud, robot, batchId, claimDir, claim.caPem));
      }
    }
  } finally {
    client.destroy();
  }
  return configs;
}

/** The robot's folder from scratch: agent.json as a boot bundle writes it, the serial file, the CA; no certificate. */
async function writeClaimConfig(
  cloud: LocalCloud,
  robot: SimulatedRobotSetup,
  batchId: string,
  claimDir: string,
  caPem: string,
): Promise<AgentConfig & { readonly provisioning: ProvisioningSettings }> {
  const directory = join(cloud.paths.root, 'certs', robot.thingName);
  // Whatever an older start left (a certificate the registry no longer knows) would pass for the robot's own.
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true, mode: 0o700 });
  await writeFile(join(directory, 'serial'), `${robot.serial}\n`);
  await writeFile(join(directory, 'ca.pem'), caPem, { mode: 0o644 });
  const agentConfig = {
    endpoint: 'localhost',
    port: cloud.endpoints.mqttPort,
    thingName: robot.thingName,
    certificateFile: join(directory, 'certificate.pem.crt'),
    privateKeyFile: join(directory, 'private.pem.key'),
    caFile: join(directory, 'ca.pem'),
    keepAliveSeconds: 30,
    stateDir: join(directory, 'agent-state'),
    provisioning: {
      templateName: provisioningTemplateName(),
      claimCertificateFile: join(claimDir, 'claim.pem.crt'),
      claimPrivateKeyFile: join(claimDir, 'claim.private.key'),
      serialSource: { file: join(directory, 'serial') },
      model: robot.model,
      batch: batchId,
    },
  };
  await writeFile(robot.configFile, `${JSON.stringify(agentConfig, null, 2)}\n`);
  const config = await readAgentConfig(robot.configFile);
  return { ...config, provisioning: config.provisioning! };
}

/**
 * The robot's first boot, when it needs one: `firstBoot` to confirm once its own certificate connects; nothing when
 * it is provisioned already (its certificate installed again if it went missing). Throws when the first boot gave up.
 */
export async function provisionSimulatedRobot(
  config: AgentConfig & { readonly provisioning: ProvisioningSettings },
  serial: string,
  log: Logger,
): Promise<{ firstBoot?: FirstBoot }> {
  const store = new ProvisioningStore(join(config.stateDir, 'provisioning'));
  const record = await store.load();
  if (record.step === 'provisioned') {
    await ensureInstalled(store, config, record);
    return {};
  }
  if (!needsFirstBoot(record, await exists(config.certificateFile))) return {};
  await checkClaimCredentials(config);
  const firstBoot = new FirstBoot({
    config,
    serial,
    store,
    // In-process robots have no systemd to restart them: the claim link retries its first connection for ever.
    createLink: (options, linkLog) => new MqttLink({ ...options, firstConnectionBudgetSeconds: undefined }, { log: linkLog }),
    log,
  });
  const result = await firstBoot.run();
  if (result.kind === 'gave-up') {
    throw new Error(
      `simulated robot ${config.thingName} could not provision itself by claim: ${result.failure.reason} (${result.failure.detail}); ` +
        `see \`npm run factory -- status --batch ${config.provisioning.batch}\``,
    );
  }
  return result.kind === 'ready' ? { firstBoot } : {};
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
