import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLog } from '../../agent/adapters/json-log.js';
import { Installer, killHook } from '../../agent/installer.js';
import { FakeInstallJobs } from './fake-install-jobs.js';

/**
 * The installer as its own process, for the kill-at-step tests (test/integration/installer-kill.test.ts): argv[2] is
 * a work folder holding `root/` (the software root), `jobs.json` (FakeInstallJobs' executions), `objects.json`
 * ({ sha: url }) and where `events.jsonl` and `outcome.json` are written. HEARTBEAT_INSTALL_KILL_AFTER=<step> kills
 * it right after that step is persisted, as agent/main.ts does. It exits 0 once the installer found nothing more to do.
 */
const work = process.argv[2]!;
const urls = JSON.parse(readFileSync(join(work, 'objects.json'), 'utf8')) as Record<string, string>;
const jobs = new FakeInstallJobs(join(work, 'jobs.json'));
const installer = new Installer({
  settings: { root: join(work, 'root'), restartCommands: ['true'], restartTimeoutMs: 5_000, healthChecks: [], keepVersions: 3 },
  jobs,
  artifacts: {
    urls: async (shas) => ({ urls: shas.filter((s) => urls[s]).map((s) => ({ sha256: s, url: urls[s]! })), missing: shas.filter((s) => !urls[s]) }),
  },
  report: async (event) => appendFileSync(join(work, 'events.jsonl'), `${JSON.stringify(event)}\n`),
  linkUp: () => true,
  log: silentLog,
  afterPersist: killHook(process.env),
});
installer.onOutcome((outcome) => appendFileSync(join(work, 'outcome.jsonl'), `${JSON.stringify(outcome)}\n`));
await installer.start();
// Settle: the boot decision and any job delivered at start run through the installer's queue.
for (let i = 0; i < 3; i += 1) {
  await new Promise((resolve) => setTimeout(resolve, 50));
  await installer.idle();
}
installer.stop();
process.exit(0);
