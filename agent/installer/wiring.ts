import { ARTIFACT_COMMANDS } from '../../schemas/deployments.js';
import type { AgentEvent } from '../../schemas/device.js';
import type { Logger } from '../adapters/json-log.js';
import type { Link } from '../adapters/mqtt-link.js';
import type { AgentConfig } from '../config.js';
import { Installer } from '../installer.js';
import { JobsClient } from '../jobs-client.js';
import { CloudArtifactUrls } from './fetcher.js';
import type { HealthCheck } from './health-check.js';
import type { TeleoperationGate } from './teleoperation-gate.js';
import { envInjectedFailure, killHook } from './test-hooks.js';

/**
 * The installer on a running agent (composition only): agent.json's `install` section → InstallerSettings, the jobs
 * client and the artifact URLs on the agent's link, reports through the agent's outbox, SoftwareState on every
 * connection. `HEARTBEAT_INSTALL_FAIL=1` injects an INJECTED failure after the restart (unless agent.json says
 * otherwise); `HEARTBEAT_INSTALL_KILL_AFTER=<step>` SIGKILLs the process right after that step is persisted (the
 * kill-at-step tests, as a power cut would) — see ./test-hooks.ts.
 */

/** What startAgentInstaller needs of the running agent (agent/agent.ts). */
export interface InstallerHost {
  report(event: AgentEvent): Promise<void>;
  onLinkUp(listener: () => void): () => void;
  onCommand(request: string, handler: (body: unknown) => void | Promise<void>): () => void;
}

export async function startAgentInstaller(deps: {
  readonly config: Pick<AgentConfig, 'thingName' | 'install'>;
  readonly agent: InstallerHost;
  readonly link: Link;
  readonly log: Logger;
  readonly teleoperation?: TeleoperationGate | undefined;
  readonly env?: NodeJS.ProcessEnv;
}): Promise<Installer> {
  const { config, agent, link, log } = deps;
  const env = deps.env ?? process.env;
  const settings = config.install;
  const artifacts = new CloudArtifactUrls({ link, thingName: config.thingName, log });
  agent.onCommand(ARTIFACT_COMMANDS.urls, artifacts.onReply);
  const jobs = new JobsClient({ link, thingName: config.thingName, log: log.child({ component: 'jobs' }) });
  const installer = new Installer({
    settings: {
      root: settings.root,
      restartCommands: settings.restart,
      restartTimeoutMs: settings.restartTimeoutSeconds * 1000,
      healthChecks: settings.healthChecks.map((c): HealthCheck => ('command' in c ? { kind: 'command', command: c.command } : { kind: 'tcp', port: c.tcpPort, host: c.host })),
      keepVersions: settings.keepVersions,
      injectFailure: settings.injectFailure ?? envInjectedFailure(env),
      model: config.thingName.split('-')[0],
    },
    jobs,
    artifacts,
    report: (event) => agent.report(event),
    linkUp: () => link.isConnected,
    teleoperation: deps.teleoperation,
    log,
    afterPersist: killHook(env),
  });
  await installer.start();
  agent.onLinkUp(() => {
    installer
      .softwareStateEvent()
      .then((event) => agent.report(event))
      .catch((error: unknown) => log.warn('software state not reported', { error }));
  });
  return installer;
}
