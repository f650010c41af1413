import type { InstallFailureReason } from '../../schemas/deployments.js';
import type { Logger } from '../adapters/json-log.js';
import { runCommand } from './health-check.js';
import { InstallError } from './install-error.js';
import type { InstallerSettings } from './options.js';
import type { VersionStore } from './version-store.js';

/**
 * Runs the restart commands in `version`'s directory, one after another. With a `reason` (the forward install) the
 * first failing command throws an InstallError of that reason; without one (the switch back after a failure, where
 * nothing better can be done) a failure is logged and the rest still run.
 */
export async function restartServices(
  version: string,
  reason: InstallFailureReason | undefined,
  parts: { readonly settings: Pick<InstallerSettings, 'restartCommands' | 'restartTimeoutMs'>; readonly versions: VersionStore; readonly log: Logger },
): Promise<void> {
  const { settings, versions, log } = parts;
  for (const command of settings.restartCommands) {
    const result = await runCommand(command, { version, versionDirectory: versions.versionPath(version) }, settings.restartTimeoutMs);
    if (!result.ok) {
      if (reason) throw new InstallError(reason, result.detail);
      log.warn('restart command failed', { version, detail: result.detail });
    }
  }
}
