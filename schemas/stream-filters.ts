import { ROBOT_UPDATE_EVENT_TYPES } from './deployments.js';
/**
 * Which event log stream records the consumers (projector, broadcaster) need, as Lambda event filter patterns: an
 * event item, or a head whose write carried a new telemetry sample. Markers and event-only head rewrites (about two
 * thirds of the records) are dropped before any invocation. One definition: the CDK event source mappings use the
 * patterns as FilterCriteria, the local cloud's stream poller applies them with `matchesAnyFilter`.
 */
export type FilterPattern = { readonly [key: string]: FilterPattern | readonly (string | number | boolean)[] };

export const PROJECTED_RECORD_PATTERNS: readonly FilterPattern[] = [
  { dynamodb: { NewImage: { kind: { S: ['event'] } } } },
  { dynamodb: { NewImage: { kind: { S: ['head'] }, telemetryChanged: { BOOL: [true] } } } },
];

/**
 * What the stream coalescer needs: every write of a robot's head (a new sample, and every event, which changes the
 * robot's state), and nothing else: it pushes each robot's latest view, built from the head alone.
 */
export const HEAD_RECORD_PATTERNS: readonly FilterPattern[] = [{ dynamodb: { NewImage: { kind: { S: ['head'] } } } }];

/**
 * Lambda's matching for the patterns used here: a list of values matches when the record's value equals one of them;
 * an object matches when each of its keys matches. (Lambda's prefix/numeric/exists rules are not needed.)
 */
export function matchesFilter(value: unknown, pattern: FilterPattern): boolean {
  if (typeof value !== 'object' || value === null) return false;
  return Object.entries(pattern).every(([key, expected]) => {
    const actual = (value as Record<string, unknown>)[key];
    if (Array.isArray(expected)) return expected.some((candidate) => candidate === actual);
    return matchesFilter(actual, expected as FilterPattern);
  });
}

export function matchesAnyFilter(value: unknown, patterns: readonly FilterPattern[]): boolean {
  return patterns.some((pattern) => matchesFilter(value, pattern));
}

/**
 * What the certificate retirer needs (functions/app/retire-certificates.ts): the events that take a certificate out
 * of service — a re-image's RobotProvisioned, a rotation's CertificateRotationFailed, an issuance that replaces an
 * open rotation's certificate (CertificateIssued) — and nothing else; the retirer
 * itself checks the claim and the fields, the filter only spares it the other 99.9 % of the stream.
 */
export const RETIREMENT_RECORD_PATTERNS: readonly FilterPattern[] = [
  { dynamodb: { NewImage: { kind: { S: ['event'] }, type: { S: ['RobotProvisioned', 'CertificateRotationFailed', 'CertificateIssued'] } } } },
];

/**
 * The deployment orchestrator's records: the robots' update events (ROBOT_UPDATE_EVENT_TYPES); the CDK event source
 * mapping and the local cloud's poller apply the same filter.
 */
export const DEPLOYMENT_UPDATE_RECORD_PATTERNS: readonly FilterPattern[] = [
  { dynamodb: { NewImage: { kind: { S: ['event'] }, type: { S: [...ROBOT_UPDATE_EVENT_TYPES] } } } },
];


/**
 * The deployments table's stream (issue 12): only the writes of a deployment's head (`deployment#<id>` / `head`),
 * each a committed decision that moved its revision; robots, events, effects and markers are dropped before any
 * invocation. The deployment-change broadcaster (functions/app/live/deployment-changes.ts) turns each into a
 * DeploymentChanged push.
 */
export const DEPLOYMENT_HEAD_RECORD_PATTERNS: readonly FilterPattern[] = [{ dynamodb: { NewImage: { sk: { S: ['head'] } } } }];
