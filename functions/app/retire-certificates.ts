import type { DynamoDBBatchResponse, DynamoDBRecord } from 'aws-lambda';
import type { RecordedEvent } from '../../schemas/index.js';
import { certificateOf } from '../domain/robot-state.js';
import { logger, metrics, MetricUnit } from '../platform/observability.js';
import { readStreamItems } from './live/stream-items.js';
import type { EventLog, StreamRecordReader } from './ports.js';

/**
 * The certificate retirer (issue 11): takes certificates out of service that the event log says no robot will use
 * again, on the IoT registry itself, so what the log says and what IoT lets connect agree.
 *
 * - A re-image (`RobotProvisioned`, claim `reimage`): the superseded certificate's key was wiped with the old image,
 *   so it is REVOKED (for good) and detached from the thing. The thing stays, with its attributes, groups and event
 *   history; only the old principal leaves it.
 * - An abandoned rotation (`CertificateRotationFailed` naming `abandonedCertificateId`): the robot got the new
 *   certificate but could not connect with or store it and stays on its current one; the new one is set INACTIVE and
 *   detached, so a failed rotation leaves no extra active certificate. The robot's decider names the certificate the
 *   cloud issued for the request (CertificateIssued) when the agent cannot (its reply was lost: NO_REPLY), and records
 *   a re-image during an open rotation as such a failure (`REIMAGED`), so a certificate the robot never heard of ends
 *   inactive too.
 * - A replaced issuance (`CertificateIssued` naming `replacedCertificateId`): the robot asked again (it lost the reply
 *   or restarted) or left an older rotation; the earlier certificate is deactivated and detached likewise.
 *
 * It runs on the event log stream (the `stream-certificate-retirer` Lambda in AWS; the local cloud polls the same
 * stream with the local registry, where RegisterThing has already revoked a re-image's certificate).
 *
 * INVARIANTS
 * - Never the certificate in use: an abandoned certificate is kept when it is the one the robot says it goes on using,
 *   or the one the robot's state says it uses now (a later rotation to it, a re-provisioning with it). A superseded
 *   certificate is never the new one (the hook admits a re-image only for a different certificate).
 * - Idempotent: revoking a revoked certificate, deactivating an inactive one, detaching a detached one and either of
 *   an unknown one are no-ops (the registry's contract), so a redelivered record changes nothing.
 * - A failure of the registry (IoT throttles, is unavailable) reports that record as the batch item failure: it and
 *   what follows come again. A malformed record is skipped, logged and counted (the projector sets it aside).
 */

/** What the retirer needs of the IoT registry (functions/adapters/iot-certificate-registry.ts, or the local one). */
export interface RetiringRegistry {
  /** UpdateCertificate REVOKED, then DetachThingPrincipal; nothing for an unknown, revoked or detached certificate. */
  revoke(thingName: string, certificateId: string): Promise<void>;
  /** UpdateCertificate INACTIVE, then DetachThingPrincipal; nothing for an unknown, inactive or detached certificate. */
  retire(thingName: string, certificateId: string): Promise<void>;
}

export type Retirement =
  | { readonly kind: 'revoke'; readonly robotId: string; readonly certificateId: string; readonly eventId: string }
  | {
      readonly kind: 'deactivate';
      readonly robotId: string;
      readonly certificateId: string;
      /** The certificate the robot said it goes on using. */
      readonly inUse: string | undefined;
      readonly eventId: string;
    };

/** The certificate an event takes out of service, if any. Pure. */
export function retirementOf(recorded: RecordedEvent): Retirement | undefined {
  const { event } = recorded;
  if (event.type === 'RobotProvisioned' && event.data.claim === 'reimage' && event.data.supersededCertificateId) {
    if (event.data.supersededCertificateId === event.data.certificateId) return undefined;
    return { kind: 'revoke', robotId: event.robotId, certificateId: event.data.supersededCertificateId, eventId: event.eventId };
  }
  if (event.type === 'CertificateIssued' && event.data.replacedCertificateId) {
    // The robot's decider never names the certificate the request said is in use; the head check still applies.
    return { kind: 'deactivate', robotId: event.robotId, certificateId: event.data.replacedCertificateId, inUse: undefined, eventId: event.eventId };
  }
  if (event.type === 'CertificateRotationFailed' && event.data.abandonedCertificateId) {
    return {
      kind: 'deactivate',
      robotId: event.robotId,
      certificateId: event.data.abandonedCertificateId,
      inUse: event.data.certificateId,
      eventId: event.eventId,
    };
  }
  return undefined;
}

export interface RetireDependencies {
  readonly certificates: RetiringRegistry;
  /** The robot's head: which certificate its state says it uses now. */
  readonly eventLog: Pick<EventLog, 'readHead'>;
}

export type RetirementOutcome = 'revoked' | 'deactivated' | 'kept-in-use';

export async function retireCertificate(deps: RetireDependencies, retirement: Retirement): Promise<RetirementOutcome> {
  const { robotId, certificateId } = retirement;
  if (retirement.kind === 'revoke') {
    await deps.certificates.revoke(robotId, certificateId);
    return 'revoked';
  }
  if (retirement.inUse === certificateId) return 'kept-in-use';
  const head = await deps.eventLog.readHead(robotId);
  if (head && certificateOf(head.state).id === certificateId) return 'kept-in-use';
  await deps.certificates.retire(robotId, certificateId);
  return 'deactivated';
}

/** The stream consumer: each record's retirement, in order; the first that fails is the batch item failure. */
export function streamCertificateRetirer(readRecord: StreamRecordReader) {
  return async (records: readonly DynamoDBRecord[], deps: RetireDependencies): Promise<DynamoDBBatchResponse> => {
    for (const { sequenceNumber, item } of readStreamItems(records, readRecord)) {
      if (item.kind !== 'event') continue;
      const retirement = retirementOf(item.recorded);
      if (!retirement) continue;
      try {
        const outcome = await retireCertificate(deps, retirement);
        logger.info('certificate retired', { ...retirement, outcome });
        metrics.addMetric(outcome === 'revoked' ? 'CertificatesRevoked' : outcome === 'deactivated' ? 'CertificatesDeactivated' : 'CertificatesKeptInUse', MetricUnit.Count, 1);
      } catch (error) {
        logger.error('certificate retirement failed; the record comes again', { ...retirement, error: error instanceof Error ? error.message : String(error) });
        metrics.addMetric('CertificateRetirementFailed', MetricUnit.Count, 1);
        return { batchItemFailures: [{ itemIdentifier: sequenceNumber }] };
      }
    }
    return { batchItemFailures: [] };
  };
}
