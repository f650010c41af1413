import { createAgent, type Agent } from '../agent/agent.js';
import { MqttLink } from '../agent/adapters/mqtt-link.js';
import { createJsonLog, logLevelFromEnv } from '../agent/adapters/json-log.js';
import type { AgentConfig } from '../agent/config.js';
import type { Installer } from '../agent/installer.js';
import { startAgentInstaller } from '../agent/installer/wiring.js';
import type { FirstBoot } from '../agent/provisioning-driver.js';
import type { LocalCloud } from './cloud.js';
import { createSimulatedTelemetry } from './simulated-hardware.js';
import { parseSimulatedInstallFaults, SIM_INSTALL_FAIL_ENV, simulatedInjection } from './simulated-install-faults.js';
import {
  provisionSimulatedRobot,
  setUpForClaim,
  simulatedBatchId,
  simulatedRobotSetup,
  simulatedRobotState,
  type SimulatedRobotSetup,
} from './simulated-provisioning.js';
import { ThingRegistry } from './thing-registry.js';

/**
 * Robots for the local cloud with no hardware: each one is the real agent (its MQTT link over mTLS, telemetry
 * policy, offline queue, commands) with simulated vital signs, in this process. Two LeKiwi for every XLeRobot,
 * named `lekiwi-SIM001`, `lekiwi-SIM002`, `xle-SIM003`, …. On their first start they provision themselves by claim
 * as real robots do (local/simulated-provisioning.ts: serials registered in the local batches `sim-lekiwi` and
 * `sim-xle`, the agent's own first boot); their certificates are kept in the state dir, so the same robots come back
 * on the next one, with no provisioning.
 *
 * Each robot takes software updates (issue 12) with the agent's real installer (agent/installer.ts
 * `startAgentInstaller`, as agent/main.ts starts it): IoT Jobs on the local broker, objects from the local artifact
 * store, its own software root `<stateDir>/certs/<thing>/agent-state/software`. With no services to restart, its
 * restart is nothing and its health check is the agent's link being up. `HEARTBEAT_SIM_INSTALL_FAIL` makes chosen
 * robots' installs fail (local/simulated-install-faults.ts).
 */
export interface SimulatedFleet {
  readonly thingNames: readonly string[];
  stop(): Promise<void>;
}

export function simulatedThingName(index: number): string {
  return `${index % 3 === 2 ? 'xle' : 'lekiwi'}-SIM${String(index + 1).padStart(3, '0')}`;
}

export async function startSimulatedFleet(options: {
  cloud: LocalCloud;
  count: number;
  /** One line of progress (npm start prints it). */
  say?: (line: string) => void;
  /** The environment the fault setting is read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}): Promise<SimulatedFleet> {
  const { cloud, count } = options;
  const stateDir = cloud.paths.root;
  const registry = ThingRegistry.in(stateDir);
  const thingNames = Array.from({ length: count }, (_, index) => simulatedThingName(index));
  const faults = parseSimulatedInstallFaults((options.env ?? process.env)[SIM_INSTALL_FAIL_ENV], thingNames);
  const agents: Agent[] = [];
  const installers: Installer[] = [];
  const stopAll = async () => {
    for (const installer of installers) installer.stop();
    await Promise.allSettled(agents.map((agent) => agent.stop()));
  };
  const log = createJsonLog({ level: logLevelFromEnv() ?? 'warn', fields: { source: 'simulated-fleet' } });
  try {
    const setups = thingNames.map((thingName) => simulatedRobotSetup(stateDir, thingName));
    const configs = new Map<string, AgentConfig>();
    const claims = new Map<string, SimulatedRobotSetup>();
    const fresh: SimulatedRobotSetup[] = [];
    for (const setup of setups) {
      const state = await simulatedRobotState(setup, registry);
      if (state === undefined) fresh.push(setup);
      else {
        configs.set(setup.thingName, state.config);
        if (state.kind === 'claim') claims.set(setup.thingName, setup);
      }
    }
    for (const [thingName, config] of await setUpForClaim(cloud, fresh)) configs.set(thingName, config);
    for (const setup of fresh) claims.set(setup.thingName, setup);

    // The first boot of each robot that needs one (one at a time: each is a few MQTT round trips).
    const firstBoots = new Map<string, FirstBoot>();
    let provisioning = 0;
    const startedAt = Date.now();
    for (const [thingName, setup] of claims) {
      const config = configs.get(thingName)!;
      if (!('provisioning' in config) || !config.provisioning) continue;
      const robotLog = log.child({ thingName, component: 'provisioning' });
      if (provisioning === 0 && fresh.length > 0) {
        const batches = [...new Set(fresh.map((robot) => simulatedBatchId(robot.model)))].join(', ');
        options.say?.(`… provisioning ${fresh.length} simulated robot${fresh.length === 1 ? '' : 's'} by claim (batch ${batches})…`);
      }
      // The broker's port of this start (agent.json keeps the one of the start that wrote it).
      const here = { ...config, endpoint: 'localhost', port: cloud.endpoints.mqttPort, provisioning: config.provisioning };
      const { firstBoot } = await provisionSimulatedRobot(here, setup.serial, robotLog);
      if (firstBoot) {
        firstBoots.set(thingName, firstBoot);
        provisioning += 1;
      }
    }
    if (provisioning > 0) options.say?.(`✓ ${provisioning} simulated robot${provisioning === 1 ? '' : 's'} registered by claim (${Date.now() - startedAt} ms); connecting with their own certificates`);
    if (faults) {
      const versions = faults.versions ? ` of ${[...faults.versions].join(', ')}` : '';
      options.say?.(`! installs${versions} will fail on ${faults.robots.size} simulated robot${faults.robots.size === 1 ? '' : 's'} (${SIM_INSTALL_FAIL_ENV}): ${[...faults.robots].join(', ')}`);
    }

    for (const thingName of thingNames) {
      const stored = configs.get(thingName)!;
      const config = { ...stored, endpoint: 'localhost', port: cloud.endpoints.mqttPort };
      const robotLog = log.child({ thingName });
      // In-process robots have no systemd to restart them: they retry their first connection for ever.
      const link = new MqttLink({ ...config, firstConnectionBudgetSeconds: undefined }, { log: robotLog.child({ component: 'mqtt' }) });
      const agent = createAgent({ config, link, telemetry: createSimulatedTelemetry({ thingName }), log: robotLog });
      await agent.start();
      agents.push(agent);
      // Software updates: restart = nothing, health = the link up (agent.json's install section, defaults).
      const injection = simulatedInjection(thingName, faults);
      const installer = await startAgentInstaller({
        config: { thingName, install: { ...config.install, restart: [], healthChecks: [], injectFailure: injection.injectFailure } },
        agent: {
          report: (event) => {
            injection.observe(event);
            return agent.report(event);
          },
          onLinkUp: (listener) => agent.onLinkUp(listener),
          onCommand: (request, handler) => agent.onCommand(request, handler),
        },
        link,
        log: robotLog.child({ component: 'installer' }),
        env: {},
      });
      installers.push(installer);
      const firstBoot = firstBoots.get(thingName);
      // The first connection with the robot's own certificate makes it `provisioned` (as agent/main.ts does).
      if (firstBoot) {
        link.start().then(
          () => firstBoot.confirmConnected(),
          () => undefined,
        ).catch((error: unknown) => robotLog.error('provisioning: recording the provisioned robot failed; the next start resumes it', { error }));
      }
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  return {
    thingNames,
    stop: stopAll,
  };
}
