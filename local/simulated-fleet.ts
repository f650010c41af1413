import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { createAgent, type Agent } from '../agent/agent.js';
import { MqttLink } from '../agent/adapters/mqtt-link.js';
import { createJsonLog, logLevelFromEnv } from '../agent/adapters/json-log.js';
import { loadAgentConfig } from '../agent/config.js';
import type { LocalCloud } from './cloud.js';
import { createSimulatedTelemetry } from './simulated-hardware.js';
import { provisionThing, ThingRegistry } from './thing-registry.js';

/**
 * Robots for the local cloud with no hardware: each one is the real agent (its MQTT link over mTLS, telemetry
 * policy, offline queue, commands) with simulated vital signs, in this process. Two LeKiwi for every XLeRobot,
 * named `lekiwi-SIM001`, `lekiwi-SIM002`, `xle-SIM003`, …; their certificates are issued on the first start and
 * kept in the state dir, so the same robots come back on the next one.
 */
export interface SimulatedFleet {
  readonly thingNames: readonly string[];
  stop(): Promise<void>;
}

export function simulatedThingName(index: number): string {
  return `${index % 3 === 2 ? 'xle' : 'lekiwi'}-SIM${String(index + 1).padStart(3, '0')}`;
}

export async function startSimulatedFleet(options: { cloud: LocalCloud; count: number }): Promise<SimulatedFleet> {
  const { cloud, count } = options;
  const stateDir = cloud.paths.root;
  const registry = ThingRegistry.in(stateDir);
  const thingNames = Array.from({ length: count }, (_, index) => simulatedThingName(index));
  const agents: Agent[] = [];
  const log = createJsonLog({ level: logLevelFromEnv() ?? 'warn', fields: { source: 'simulated-fleet' } });
  try {
    for (const thingName of thingNames) {
      const configFile = join(stateDir, 'certs', thingName, 'agent.json');
      const known = (await registry.lookup(thingName)) !== undefined && (await exists(configFile));
      if (!known) await provisionThing(stateDir, cloud.ca, thingName, { port: cloud.endpoints.mqttPort });
      const config = { ...(await loadAgentConfig(configFile)), endpoint: 'localhost', port: cloud.endpoints.mqttPort };
      const robotLog = log.child({ thingName });
      const agent = createAgent({
        config,
        // In-process robots have no systemd to restart them: they retry their first connection for ever.
        link: new MqttLink({ ...config, firstConnectionBudgetSeconds: undefined }, { log: robotLog.child({ component: 'mqtt' }) }),
        telemetry: createSimulatedTelemetry({ thingName }),
        log: robotLog,
      });
      await agent.start();
      agents.push(agent);
    }
  } catch (error) {
    await Promise.allSettled(agents.map((agent) => agent.stop()));
    throw error;
  }
  return {
    thingNames,
    async stop() {
      await Promise.allSettled(agents.map((agent) => agent.stop()));
    },
  };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
