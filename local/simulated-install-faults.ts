import type { InstallSettings } from '../agent/config.js';
import type { InstallStep } from '../schemas/deployments.js';
import type { AgentEvent } from '../schemas/device.js';

/**
 * Install failures injected on chosen simulated robots (issue 12: the abort-and-rollback test and `bench:deploy`),
 * from the environment of `npm start`:
 *
 *   HEARTBEAT_SIM_INSTALL_FAIL=<robots>[@<version>,<version>…]
 *     <robots>  thing names (`lekiwi-SIM003,xle-SIM006`), or a share of the fleet (`20%`: spread evenly, every 5th)
 *     @…        only installs of these release versions fail (default: every deployment's); rollbacks never do
 *
 * A failing robot runs the installer's own injected failure (agent.json `install.injectFailure`, reason INJECTED,
 * after the restart step): it really switched, restarts and switches back, as a failing health check would.
 *
 * INVARIANTS: which robots fail is a pure function of the setting and the fleet's names (the same robots on every
 * start); a robot fails only an install it started (its UpdateStarted names the version and kind) of a version the
 * setting names.
 */
export const SIM_INSTALL_FAIL_ENV = 'HEARTBEAT_SIM_INSTALL_FAIL';

/** The step after which a failing robot's install fails (the switch and restart have happened: a real rollback). */
const FAIL_AFTER: InstallStep = 'restarted';

export interface SimulatedInstallFaults {
  /** Robots whose installs fail. */
  readonly robots: ReadonlySet<string>;
  /** Only installs of these versions fail; undefined: every version. */
  readonly versions: ReadonlySet<string> | undefined;
}

export class SimulatedInstallFaultsError extends Error {
  override readonly name = 'SimulatedInstallFaultsError';
}

/** Parses the setting against the fleet's thing names (index order); undefined when unset. Throws on a bad setting. */
export function parseSimulatedInstallFaults(raw: string | undefined, thingNames: readonly string[]): SimulatedInstallFaults | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const [who = '', which] = raw.trim().split('@', 2);
  const versions = which === undefined ? undefined : new Set(which.split(',').map((v) => v.trim()).filter((v) => v !== ''));
  if (versions !== undefined && versions.size === 0) throw new SimulatedInstallFaultsError(`${SIM_INSTALL_FAIL_ENV}=${raw}: name at least one version after @`);
  const share = /^(\d+(?:\.\d+)?)%$/.exec(who.trim());
  if (share) {
    const fraction = Number(share[1]) / 100;
    if (!(fraction >= 0 && fraction <= 1)) throw new SimulatedInstallFaultsError(`${SIM_INSTALL_FAIL_ENV}=${raw}: a share is 0%–100%`);
    return { robots: new Set(spread(thingNames, fraction)), versions };
  }
  const named = who.split(',').map((name) => name.trim()).filter((name) => name !== '');
  const unknown = named.filter((name) => !thingNames.includes(name));
  if (named.length === 0 || unknown.length > 0) {
    throw new SimulatedInstallFaultsError(
      `${SIM_INSTALL_FAIL_ENV}=${raw}: ${named.length === 0 ? 'name robots or a share (20%)' : `not in the simulated fleet: ${unknown.join(', ')}`}`,
    );
  }
  return { robots: new Set(named), versions };
}

/**
 * `fraction` of the names, spread evenly in index order: index i fails when ⌊(i+1)·f⌋ > ⌊i·f⌋ (20 %: the 5th, 10th, …),
 * so every batch of a rolling deployment meets its share, and the abort threshold trips in the first batches.
 */
function spread(thingNames: readonly string[], fraction: number): string[] {
  // The small epsilon keeps 20 % of 100 at exactly 20 robots despite binary fractions.
  const count = (n: number) => Math.floor(n * fraction + 1e-9);
  return thingNames.filter((_, index) => count(index + 1) > count(index));
}

/**
 * One robot's injected failure as the installer reads it (InstallSettings.injectFailure), live: it fires only while
 * the install under way (known from the UpdateStarted the robot reports) is a deployment of a named version. Pass
 * every event the robot reports through `observe`.
 */
export function simulatedInjection(
  thingName: string,
  faults: SimulatedInstallFaults | undefined,
): { readonly injectFailure: InstallSettings['injectFailure']; observe(event: AgentEvent): void } {
  if (!faults?.robots.has(thingName)) return { injectFailure: undefined, observe: () => undefined };
  let armed = false;
  const injectFailure = {
    reason: 'INJECTED' as const,
    // The installer compares this with the step it just persisted on every step: a step name no install has while
    // disarmed keeps it from firing. (A getter, because the installer keeps the settings object it was given.)
    get step(): InstallStep {
      return armed ? FAIL_AFTER : ('disarmed' as InstallStep);
    },
  };
  return {
    injectFailure,
    observe(event) {
      if (event.type !== 'UpdateStarted') return;
      armed = event.data.kind === 'deploy' && (faults.versions === undefined || faults.versions.has(event.data.version));
    },
  };
}
