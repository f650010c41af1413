import { handleRotationMessage, InvalidCsrError, type CertificateRegistry, type RotationOutcome } from '../functions/app/certificate-rotation.js';
import type { EventLog, RobotCommandChannel } from '../functions/app/ports.js';
import type { RetiringRegistry } from '../functions/app/retire-certificates.js';
import { ROTATION_RULE } from '../schemas/rotation.js';
import { InvalidCsrError as LocalInvalidCsrError, type CertificateAuthority } from './certificate-authority.js';
import type { BrokerLog, RuleAction } from './iot-broker/contract.js';
import type { ThingRegistry } from './thing-registry.js';

/**
 * The local IoT Core's rule target for certificate rotation (issue 11, item 4): the rule `heartbeat_certificate_rotation`
 * runs the very use case the `CertificateRotation` Lambda runs in AWS (functions/app/certificate-rotation.ts), with the
 * local CA signing CSRs and the thing registry (the one the broker authenticates against) attaching and deactivating
 * certificates. Replies go out through the broker, as the Lambda's go through IoT's data plane.
 *
 * INVARIANTS
 * - Like IoT's asynchronous Lambda action, a failure never reaches the robot's connection: the action logs it and
 *   resolves (the robot's own timeout then reports NO_REPLY); it never fails the robot's PUBACK.
 * - Only certificates signed here have a known notAfter (kept in memory for the run); others record null.
 */
export interface LocalCertificateRotationOptions {
  readonly ca: CertificateAuthority;
  readonly registry: ThingRegistry;
  readonly eventLog: EventLog;
  /** Publishes `cmd/heartbeat/<thing>/<request>` as the cloud (the broker's publish, bound once it is up). */
  readonly replies: RobotCommandChannel;
  readonly log?: BrokerLog;
  /** Told of every message handled (tests, benchmarks). */
  readonly onOutcome?: (outcome: RotationOutcome) => void;
}

/**
 * The local CA and thing registry as IoT's certificate registry, for rotation and for the certificate retirer
 * (`retire` deactivates, `revoke` revokes; the registry keeps both on the thing as history).
 */
export function localCertificateRegistry(ca: CertificateAuthority, registry: ThingRegistry): CertificateRegistry & RetiringRegistry {
  const expiries = new Map<string, string>();
  return {
    async issue(thingName, csrPem) {
      let signed;
      try {
        signed = await ca.signCertificateRequest(csrPem);
      } catch (error) {
        if (error instanceof LocalInvalidCsrError) throw new InvalidCsrError(error.message);
        throw error;
      }
      expiries.set(signed.certificateId, signed.notAfter.toISOString());
      await registry.attach(thingName, signed.certificateId);
      return { certificateId: signed.certificateId, certificatePem: signed.certificatePem };
    },
    standing: (thingName, certificateId) => registry.standing(thingName, certificateId),
    retire: (thingName, certificateId) => registry.deactivate(thingName, certificateId),
    revoke: (thingName, certificateId) => registry.revoke(thingName, certificateId),
    notAfter: async (certificateId) => expiries.get(certificateId) ?? null,
  };
}

/** The rule and its action, for the broker's `rules`. */
export function localCertificateRotationRule(options: LocalCertificateRotationOptions): RuleAction {
  const log = options.log ?? (() => undefined);
  const certificates = localCertificateRegistry(options.ca, options.registry);
  return {
    rule: ROTATION_RULE,
    put: async ({ data }) => {
      try {
        const outcome = await handleRotationMessage(
          {
            certificates,
            replies: options.replies,
            eventLog: options.eventLog,
            now: () => new Date(),
            log: (level, message, details) => log({ level, message, ...details }),
          },
          data,
        );
        options.onOutcome?.(outcome);
      } catch (error) {
        log({ level: 'error', message: 'certificate-rotation failed (the Lambda would be retried)', error: error instanceof Error ? error.message : String(error) });
      }
    },
  };
}
