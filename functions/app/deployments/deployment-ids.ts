import { createHash, randomBytes } from 'node:crypto';

/**
 * Deployment ids (`dep-<ULID>`, schemas/deployments.ts DeploymentId): fresh ones for a new deployment, derived ones
 * for a rollback so that a repeated step names the same rollback deployment.
 */


const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A ULID's 10 time characters for `ms`. */
export function ulidTime(ms: number): string {
  let out = '';
  let rest = ms;
  for (let i = 0; i < 10; i += 1) {
    out = CROCKFORD[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

function crockfordOf(bytes: Uint8Array, length: number): string {
  let out = '';
  for (let i = 0; i < length; i += 1) out += CROCKFORD[(bytes[i] ?? 0) % 32];
  return out;
}

/** A fresh deployment id (`dep-<ULID>`) from a time and random bytes. */
export function newDeploymentId(now: Date, random: Uint8Array = randomBytes(16)): string {
  return `dep-${ulidTime(now.getTime())}${crockfordOf(random, 16)}`;
}

/**
 * The id of the rollback deployment of `parent`'s robots from `toVersion` started by the step `key`: derived, not
 * drawn, so the step repeated (a redelivery, a retried effect) names the same deployment, which exists already.
 */
export function rollbackDeploymentId(parentDeploymentId: string, key: string, toVersion: string, at: string): string {
  const digest = createHash('sha256').update(`${parentDeploymentId}\n${key}\n${toVersion}`).digest();
  return `dep-${ulidTime(Date.parse(at))}${crockfordOf(digest, 16)}`;
}
