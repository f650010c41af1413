import { spawn } from 'node:child_process';
import { connect } from 'node:net';

/**
 * The services' restart and the health check after a switch (agent.json `install.restart` / `install.healthChecks`).
 * A restart command or check command runs through `/bin/sh -c` in the new version's directory with
 * HEARTBEAT_VERSION and HEARTBEAT_VERSION_DIR set; exit 0 is success.
 *
 * INVARIANTS
 * - Every check is bounded by the deadline it is given: a port that never binds or a command that hangs fails the
 *   check at the deadline (the command is killed), it never holds the install.
 * - Checks run in order and stop at the first failure, which is named in the result.
 */

export type HealthCheck =
  | { readonly kind: 'tcp'; readonly port: number; readonly host?: string | undefined }
  | { readonly kind: 'command'; readonly command: string };

export interface CommandContext {
  readonly version: string;
  readonly versionDirectory: string;
}

export type CheckResult = { readonly ok: true } | { readonly ok: false; readonly detail: string };

const POLL_MS = 200;

/** Runs `command` to completion (or until `timeoutMs`); ok on exit 0. */
export function runCommand(command: string, context: CommandContext, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: context.versionDirectory,
      env: { ...process.env, HEARTBEAT_VERSION: context.version, HEARTBEAT_VERSION_DIR: context.versionDirectory },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => void (stderr = (stderr + chunk.toString()).slice(-300)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ ok: false, detail: `\`${command}\` did not finish within ${timeoutMs} ms` });
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: `\`${command}\` could not run: ${error.message}` });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ ok: true });
      else resolve({ ok: false, detail: `\`${command}\` exited ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ''}` });
    });
  });
}

function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Waits until `condition` holds or `deadline` (epoch ms) passes. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, deadline: number): Promise<boolean> {
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, Math.max(0, deadline - Date.now()))));
  }
}

/** Runs the checks in order within `timeoutMs` overall; `linkUp` (the agent still connected) is always checked first. */
export async function runHealthChecks(
  checks: readonly HealthCheck[],
  context: CommandContext,
  timeoutMs: number,
  linkUp: () => boolean,
): Promise<CheckResult> {
  const deadline = Date.now() + timeoutMs;
  if (!(await waitUntil(linkUp, deadline))) return { ok: false, detail: `the agent was not connected within ${timeoutMs} ms` };
  for (const check of checks) {
    if (check.kind === 'tcp') {
      const host = check.host ?? '127.0.0.1';
      if (!(await waitUntil(() => tcpAccepts(host, check.port), deadline))) {
        return { ok: false, detail: `nothing accepted connections on ${host}:${check.port} within ${timeoutMs} ms` };
      }
    } else {
      // A failing command is retried until the deadline: services may need a moment after the restart.
      let last: CheckResult = { ok: false, detail: 'not run' };
      const passed = await waitUntil(async () => {
        last = await runCommand(check.command, context, Math.max(1, deadline - Date.now()));
        return last.ok;
      }, deadline);
      if (!passed) return last;
    }
  }
  return { ok: true };
}
