import { handleArtifactUrlRequest, type ArtifactUrlOutcome } from '../functions/app/deployments/artifact-urls.js';
import type { ArtifactStore } from '../functions/app/deployments/artifact-store.js';
import type { RobotCommandChannel } from '../functions/app/ports.js';
import { ARTIFACT_RULE } from '../schemas/deployments.js';
import type { BrokerLog, RuleAction } from './iot-broker/contract.js';

/**
 * The local IoT Core's rule target for robots' download-URL requests (issue 12): the rule `heartbeat_artifact_urls`
 * runs the very use case the `ArtifactUrls` Lambda runs in AWS (functions/app/deployments/artifact-urls.ts), with the
 * local artifact store's signed URLs (served by the local HTTP gateway) in place of S3's presigned ones. Replies go out
 * through the broker, as the Lambda's go through IoT's data plane.
 *
 * INVARIANTS
 * - Like IoT's asynchronous Lambda action, a failure never reaches the robot's connection: the action logs it and
 *   resolves (the robot's own timeout then retries or fails the fetch); it never fails the robot's PUBACK.
 */
export interface LocalArtifactUrlsOptions {
  readonly store: Pick<ArtifactStore, 'objectSizes' | 'presignObject'>;
  /** Publishes `cmd/heartbeat/<thing>/<request>` as the cloud (the broker's publish, bound once it is up). */
  readonly replies: RobotCommandChannel;
  readonly ttlSeconds?: number;
  readonly log?: BrokerLog;
  /** Told of every request handled (tests, benchmarks). */
  readonly onOutcome?: (outcome: ArtifactUrlOutcome) => void;
}

/** The rule and its action, for the broker's `rules`. */
export function localArtifactUrlsRule(options: LocalArtifactUrlsOptions): RuleAction {
  const log = options.log ?? (() => undefined);
  return {
    rule: ARTIFACT_RULE,
    put: async ({ data }) => {
      try {
        const outcome = await handleArtifactUrlRequest(
          {
            store: options.store,
            replies: options.replies,
            now: () => new Date(),
            ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}),
            log: (level, message, details) => log({ level, message, ...details }),
          },
          data,
        );
        options.onOutcome?.(outcome);
      } catch (error) {
        log({ level: 'error', message: 'artifact-urls failed (the Lambda would be retried)', error: error instanceof Error ? error.message : String(error) });
      }
    },
  };
}
