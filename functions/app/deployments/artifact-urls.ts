import { ARTIFACT_COMMANDS, ArtifactUrlRequest, type ArtifactUrlReply } from '../../../schemas/deployments.js';
import { IOT_MAX_PAYLOAD_BYTES } from '../../../schemas/iot-limits.js';
import { RobotId } from '../../../schemas/robot-id.js';
import type { RobotCommandChannel } from '../ports.js';
import { DEFAULT_URL_TTL_SECONDS, type ArtifactStore } from './artifact-store.js';

/**
 * Download URLs for a robot's install (issue 12): the IoT rule `heartbeat_artifact_urls` hands this use case every
 * message a robot publishes on `dt/heartbeat/<thing>/artifacts/request`, with `thingName` from the topic; the reply
 * goes to `cmd/heartbeat/<thing>/artifact-urls`. The same code runs as the `ArtifactUrls` Lambda (S3 presigned URLs)
 * and as the local cloud's rule target (the local store's signed URLs).
 *
 * INVARIANTS
 * - Every request with a readable requestId gets exactly one reply: URLs for the objects the store has (with their
 *   sizes, so the robot checks length before hash), `missing` for those it has not, or `rejected` naming the
 *   problem. A message without a usable requestId cannot be answered: it is logged and dropped.
 * - Every URL of a reply works until `expiresAt` (the URLs are signed for at least that long) and only for its object.
 * - A reply fits in one IoT message (IOT_MAX_PAYLOAD_BYTES); one that would not is `rejected` (REPLY_TOO_LARGE)
 *   rather than published and refused by the broker (MAX_OBJECTS_PER_URL_REQUEST keeps it from happening).
 * - A failure of the store or of the publish throws (Lambda retries the asynchronous invocation; the robot's own
 *   timeout covers the rest).
 */

export interface ArtifactUrlDependencies {
  readonly store: Pick<ArtifactStore, 'objectSizes' | 'presignObject'>;
  /** Replies on `cmd/heartbeat/<thing>/<request>`. */
  readonly replies: RobotCommandChannel;
  readonly now: () => Date;
  /** How long the URLs work; DEFAULT_URL_TTL_SECONDS (15 minutes) by default. */
  readonly ttlSeconds?: number;
  readonly log: (level: 'info' | 'warn', message: string, details: Record<string, unknown>) => void;
}

export type ArtifactUrlOutcome =
  | { readonly kind: 'answered'; readonly robotId: string; readonly requestId: string; readonly urls: number; readonly missing: number }
  | { readonly kind: 'rejected'; readonly robotId: string; readonly requestId: string; readonly reason: string; readonly message: string }
  | { readonly kind: 'dropped'; readonly why: string };

export async function handleArtifactUrlRequest(deps: ArtifactUrlDependencies, input: unknown): Promise<ArtifactUrlOutcome> {
  const record = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
  const { thingName, topic: _topic, ...body } = record;
  const robot = RobotId.safeParse(thingName);
  if (!robot.success) return drop(deps, 'the rule gave no valid thing name', { thingName });
  const robotId = robot.data;
  const parsed = ArtifactUrlRequest.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const text = `${issue?.path.map(String).join('.') || '(message)'}: ${issue?.message ?? 'invalid'}`;
    const requestId = typeof body.requestId === 'string' && /^[A-Za-z0-9:_.-]{8,128}$/.test(body.requestId) ? body.requestId : undefined;
    if (requestId === undefined) return drop(deps, `an artifact URL request without a valid requestId (${text})`, { robotId });
    return reject(deps, robotId, requestId, 'INVALID_REQUEST', text);
  }
  const { requestId, objects } = parsed.data;
  const wanted = [...new Set(objects)];
  const ttlSeconds = deps.ttlSeconds ?? DEFAULT_URL_TTL_SECONDS;
  const now = deps.now();
  // Signed from `now`, so each URL lives at least until expiresAt (whole seconds, rounded down).
  const expiresAt = new Date(Math.floor(now.getTime() / 1000) * 1000 + ttlSeconds * 1000).toISOString();
  const sizes = await deps.store.objectSizes(wanted);
  const urls: { sha256: string; url: string; size: number }[] = [];
  const missing: string[] = [];
  for (const sha256 of wanted) {
    const size = sizes.get(sha256);
    if (size === undefined) missing.push(sha256);
    else urls.push({ sha256, url: await deps.store.presignObject(sha256, ttlSeconds), size });
  }
  const reply: ArtifactUrlReply = { requestId, urls, missing, expiresAt };
  const bytes = Buffer.byteLength(JSON.stringify(reply));
  if (bytes > IOT_MAX_PAYLOAD_BYTES) {
    return reject(deps, robotId, requestId, 'REPLY_TOO_LARGE', `the URLs of ${wanted.length} objects take ${bytes} bytes, over IoT's ${IOT_MAX_PAYLOAD_BYTES}: ask for fewer at once`);
  }
  await deps.replies.send(robotId, ARTIFACT_COMMANDS.urls, reply);
  deps.log('info', 'artifact URLs sent', { robotId, requestId, urls: urls.length, missing: missing.length, expiresAt });
  return { kind: 'answered', robotId, requestId, urls: urls.length, missing: missing.length };
}

async function reject(deps: ArtifactUrlDependencies, robotId: string, requestId: string, reason: string, message: string): Promise<ArtifactUrlOutcome> {
  const reply: ArtifactUrlReply = { requestId, rejected: { reason, message: message.slice(0, 500) } };
  await deps.replies.send(robotId, ARTIFACT_COMMANDS.urls, reply);
  deps.log('warn', 'artifact URL request refused', { robotId, requestId, reason, message });
  return { kind: 'rejected', robotId, requestId, reason, message };
}

function drop(deps: ArtifactUrlDependencies, why: string, details: Record<string, unknown>): ArtifactUrlOutcome {
  deps.log('warn', `artifact URL request dropped: ${why}`, details);
  return { kind: 'dropped', why };
}
