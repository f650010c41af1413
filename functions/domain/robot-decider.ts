import type { AgentEvent, DomainEvent, EventOf, LifecycleEvent, TelemetrySample } from '../../schemas/index.js';
import { InstallFailureReason, InstallStep, type UpdateQueuedData } from '../../schemas/deployments.js';
import { ALERT_THRESHOLDS, alertChange } from './alerts.js';
import { orderPresence } from './presence.js';
import { assertNever } from '../../lib/assert-never.js';
import { evolve, teleoperationConfirmed, type RobotState } from './robot-state.js';
import { jobEnded, softwareOf } from './robot-updates.js';

/**
 * Commands a robot's decider accepts. Ids and times come in as data (the decider has no clock and no random ids),
 * so the same command on the same state always decides the same events; redelivered commands produce the same
 * eventIds and the log drops them.
 */
export type RobotCommand =
  | { readonly type: 'RecordPresence'; readonly presence: LifecycleEvent }
  | { readonly type: 'RecordTelemetry'; readonly sample: TelemetrySample }
  | { readonly type: 'RecordAgentEvent'; readonly event: AgentEvent }
  | { readonly type: 'RegisterRobot'; readonly eventId: string; readonly at: string }
  | { readonly type: 'MarkFailed'; readonly eventId: string; readonly at: string; readonly reason: string; readonly by: string }
  | { readonly type: 'Recover'; readonly eventId: string; readonly at: string; readonly by: string; readonly note?: string | undefined }
  /** The ingest refused some of the robot's messages (one command per robot and ingest batch). */
  | {
      readonly type: 'RecordRejections';
      readonly eventId: string;
      readonly at: string;
      readonly count: number;
      readonly lastReason: string;
      readonly lastTopic: string | null;
    }
  /**
   * The pre-provisioning hook admitted `certificateId` as this robot (first claim or re-image). Once per certificate:
   * the event id names it, and a head already holding it decides nothing.
   */
  | {
      readonly type: 'RecordProvisioning';
      readonly at: string;
      readonly serial: string;
      readonly batch: string;
      readonly certificateId: string;
      /** The certificate's expiry (ISO 8601), when the hook could read it. */
      readonly certificateNotAfter?: string | undefined;
      readonly claim: 'first' | 'reimage';
      readonly supersededCertificateId?: string | undefined;
    }
  /**
   * The robot confirmed its new certificate and the cloud deactivated the old one (functions/app/certificate-rotation.ts).
   * Once per rotation: the event id names the request.
   */
  | {
      readonly type: 'RecordCertificateRotation';
      readonly at: string;
      readonly requestId: string;
      readonly oldCertificateId: string;
      readonly newCertificateId: string;
      readonly notAfter: string | null;
    }
  /**
   * The cloud issued `certificateId` for the rotation request `requestId` (functions/app/certificate-rotation.ts),
   * recorded before the reply goes out. Once per certificate. `currentCertificateId`: the certificate the request
   * says the robot uses now, which a replaced open rotation's certificate must not be.
   */
  | {
      readonly type: 'RecordCertificateIssuance';
      readonly at: string;
      readonly requestId: string;
      readonly certificateId: string;
      readonly currentCertificateId: string;
      readonly notAfter: string | null;
    }
  /** The offline timeout (closeIfOfflineTooLong), decided at `now` (ISO 8601) by the cloud's sweep. */
  | { readonly type: 'ExpireOfflineTeleoperation'; readonly now: string; readonly timeoutMs: number }
  /**
   * The deployment orchestrator queued the robot in a batch job (functions/app/deployments/queue-update.ts). Once per
   * job: the event id names it, and a job the robot already knows (started first, or ended) decides nothing.
   */
  | { readonly type: 'QueueUpdate'; readonly at: string; readonly update: UpdateQueuedData }
  /**
   * IoT Jobs ended the robot's execution of a job (functions/app/deployments/job-events.ts). Recorded as
   * RobotUpdateFailed{source:'jobs'} only when the robot's own word has not ended that job already; once per
   * execution attempt (the event id names it).
   */
  | {
      readonly type: 'RecordJobExecutionEnd';
      readonly at: string;
      readonly jobId: string;
      readonly status: JobExecutionEndStatus;
      /**
       * Which end of the execution this is: Jobs' retry attempt (or execution number), else IoT's event id. A retry's
       * end is another fact; a redelivery of the same event is the same one.
       */
      readonly attempt: number | string;
      /** The execution's statusDetails (the robot's own, set through the Jobs API), if any. */
      readonly statusDetails?: Readonly<Record<string, string>> | undefined;
    };

/** The terminal statuses of a job execution as IoT's job execution events carry them. */
export const JOB_EXECUTION_END_STATUSES = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED'] as const;
export type JobExecutionEndStatus = (typeof JOB_EXECUTION_END_STATUSES)[number];

export type RejectionCode = 'ROBOT_NOT_FOUND' | 'ALREADY_FAILED' | 'NOT_FAILED';

/** A command that the robot's current state does not allow; the message says what to do instead. */
export class CommandRejected extends Error {
  override readonly name = 'CommandRejected';
  constructor(
    readonly code: RejectionCode,
    message: string,
  ) {
    super(message);
  }
}

/** Whether the robot has any recorded history; commands from people need a robot that exists. */
export interface DecisionContext {
  readonly known: boolean;
}

export function decide(state: RobotState, command: RobotCommand, context: DecisionContext): DomainEvent[] {
  switch (command.type) {
    case 'RecordPresence':
      return decidePresence(state, command.presence);
    case 'RecordTelemetry':
      return decideAlerts(state, command.sample);
    case 'RecordAgentEvent':
      return decideAgentEvent(state, command.event);
    case 'RegisterRobot':
      return state.registered
        ? []
        : [event('RobotRegistered', state, command.eventId, command.at, { model: state.model })];
    case 'MarkFailed':
      requireKnown(state, context);
      if (state.failure) {
        throw new CommandRejected(
          'ALREADY_FAILED',
          `Robot ${state.robotId} is already marked failed (${state.failure.reason}); recover it first.`,
        );
      }
      return [event('RobotMarkedFailed', state, command.eventId, command.at, { reason: command.reason, by: command.by })];
    case 'Recover':
      requireKnown(state, context);
      if (!state.failure) {
        throw new CommandRejected('NOT_FAILED', `Robot ${state.robotId} is not marked failed; there is nothing to recover.`);
      }
      return [
        event('RobotRecovered', state, command.eventId, command.at, {
          by: command.by,
          ...(command.note ? { note: command.note } : {}),
        }),
      ];
    case 'ExpireOfflineTeleoperation':
      return closeIfOfflineTooLong(state, command.now, command.timeoutMs);
    case 'RecordProvisioning':
      if (state.provisioning?.certificateId === command.certificateId) return [];
      return [
        ...(command.claim === 'reimage' ? abandonOpenRotation(state, command.at) : []),
        event('RobotProvisioned', state, provisionedEventId(command.certificateId), command.at, {
          serial: command.serial,
          model: state.model,
          batch: command.batch,
          certificateId: command.certificateId,
          claim: command.claim,
          ...(command.supersededCertificateId ? { supersededCertificateId: command.supersededCertificateId } : {}),
          ...(command.certificateNotAfter ? { certificateNotAfter: command.certificateNotAfter } : {}),
        }),
      ];
    case 'RecordCertificateIssuance':
      return decideIssuance(state, command);
    case 'RecordCertificateRotation':
      if (state.certificate?.id === command.newCertificateId) return [];
      return [
        event('CertificateRotated', state, `certificate-rotated:${command.requestId}`, command.at, {
          requestId: command.requestId,
          oldCertificateId: command.oldCertificateId,
          newCertificateId: command.newCertificateId,
          notAfter: command.notAfter,
        }),
      ];
    case 'RecordRejections':
      if (command.count <= 0) return [];
      return [
        event('DeviceMessagesRejected', state, command.eventId, command.at, {
          count: command.count,
          lastReason: command.lastReason,
          lastTopic: command.lastTopic,
        }),
      ];
    case 'QueueUpdate': {
      const { jobId } = command.update;
      if (state.deployment?.jobId === jobId || jobEnded(state, jobId)) return [];
      return [event('RobotUpdateQueued', state, updateQueuedEventId(jobId), command.at, command.update)];
    }
    case 'RecordJobExecutionEnd':
      return decideJobExecutionEnd(state, command);
    default:
      return assertNever(command);
  }
}

/**
 * A rotation's issued certificate enters the robot's state, replacing the open rotation's (named in the event for the
 * retirer) unless that one is the certificate the robot says it uses now (it connected with it and its confirm was
 * lost). A request the robot already reported failed opens nothing: the cloud's reply came too late, and the
 * rotation function deactivates the certificate at once (it finds it not open).
 */
function decideIssuance(state: RobotState, command: Extract<RobotCommand, { type: 'RecordCertificateIssuance' }>): DomainEvent[] {
  const open = state.certificate?.issued;
  if (open?.certificateId === command.certificateId) return [];
  if (state.certificate?.lastFailure?.requestId === command.requestId) return [];
  const replaced = open && open.certificateId !== command.currentCertificateId ? { replacedCertificateId: open.certificateId } : {};
  return [
    event('CertificateIssued', state, certificateIssuedEventId(command.requestId, command.certificateId), command.at, {
      requestId: command.requestId,
      certificateId: command.certificateId,
      notAfter: command.notAfter,
      ...replaced,
    }),
  ];
}

/** CertificateIssued's id: one per certificate issued (a repeated request gets a new certificate, and a new id). */
export function certificateIssuedEventId(requestId: string, certificateId: string): string {
  return `certificate-issued:${requestId}:${certificateId}`;
}

/**
 * A re-image ends the open rotation: its certificate went with the old image (the new image never heard of it), so
 * the rotation is recorded failed (`REIMAGED`) naming it, before the RobotProvisioned that forgets it.
 */
function abandonOpenRotation(state: RobotState, at: string): DomainEvent[] {
  const open = state.certificate?.issued;
  if (!open) return [];
  return [
    event('CertificateRotationFailed', state, `rotation-abandoned:${open.requestId}:reimage`, at, {
      requestId: open.requestId,
      reason: 'REIMAGED',
      detail: 'the robot was re-imaged while this rotation was open',
      abandonedCertificateId: open.certificateId,
    }),
  ];
}

/** RobotUpdateQueued's id: one per robot and job, however often the orchestrator's step runs. */
export function updateQueuedEventId(jobId: string): string {
  return `update-queued:${jobId}`;
}

/**
 * A job-side end the robot's word has not covered. SUCCEEDED adds nothing (the robot says so through its outbox, with
 * what it fetched); FAILED is the robot's own status update through the Jobs API, recorded here only with a reason
 * the robot put in its statusDetails (otherwise its UpdateFailed follows through its outbox). The other ends are IoT
 * Jobs' own (timeout, cancel, removal, the robot's reject). A job the robot's state does not hold as its current
 * update (never queued here, or already ended) decides nothing: the robot's word or an earlier end stands.
 */
function decideJobExecutionEnd(state: RobotState, command: Extract<RobotCommand, { type: 'RecordJobExecutionEnd' }>): DomainEvent[] {
  const current = state.deployment;
  if (command.status === 'SUCCEEDED' || !current || current.jobId !== command.jobId || jobEnded(state, command.jobId)) return [];
  // An end from before the robot (re)started this job is an earlier attempt's, which Jobs retried and the robot reported.
  if (current.state === 'installing' && Date.parse(command.at) < Date.parse(current.since)) return [];
  const stated = InstallFailureReason.safeParse(command.statusDetails?.reason);
  const reason = command.status === 'FAILED' ? (stated.success ? stated.data : undefined) : command.status;
  if (reason === undefined) return [];
  const step = InstallStep.safeParse(command.statusDetails?.step);
  const detail = command.statusDetails?.detail?.slice(0, 500);
  return [
    event('RobotUpdateFailed', state, `job-end:${command.jobId}:${command.attempt}`, command.at, {
      deploymentId: current.deploymentId,
      jobId: current.jobId,
      version: current.version,
      kind: current.kind,
      reason,
      ...(detail ? { detail } : {}),
      ...(step.success ? { step: step.data } : {}),
      runningVersion: softwareOf(state).version,
      source: 'jobs',
    }),
  ];
}

/**
 * The one way the cloud ends a session without the robot's word: the robot has been offline for `timeoutMs` or
 * more at `now` while a session is open (nobody can confirm it, and it must not hold the robot back forever). The
 * session is known to have run until the link dropped, so that is its duration. The eventId names the session and
 * the MQTT session that dropped, so a sweep decided twice (two runs, a retry) appends it once; should the robot come
 * back and drop again with the session still open, that is a new id.
 */
export function closeIfOfflineTooLong(state: RobotState, now: string, timeoutMs: number): DomainEvent[] {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  const nowMs = Date.parse(now);
  if (!Number.isFinite(nowMs)) throw new RangeError(`now must be an ISO 8601 timestamp, got ${JSON.stringify(now)}`);
  const { teleoperation, presence } = state;
  if (!teleoperation.active || presence.status !== 'offline' || presence.since === null) return [];
  if (nowMs - Date.parse(presence.since) < timeoutMs) return [];
  const dropped = presence.last?.sessionIdentifier ?? presence.since;
  return [
    event('TeleoperationStopped', state, `teleoperation:robot-offline:${dropped}:${teleoperation.since ?? ''}`, new Date(nowMs).toISOString(), {
      reason: 'robot-offline',
      ...durationSince(teleoperation.since, presence.since),
    }),
  ];
}

function requireKnown(state: RobotState, context: DecisionContext): void {
  if (!context.known) throw new CommandRejected('ROBOT_NOT_FOUND', `Robot ${state.robotId} is not known to the fleet.`);
}

function decidePresence(state: RobotState, presence: LifecycleEvent): DomainEvent[] {
  if (orderPresence(presence, state.presence.last) !== 'newer') return [];
  const at = new Date(presence.timestamp).toISOString();
  const eventId = `presence:${presence.sessionIdentifier}:${presence.eventType}`;
  if (presence.eventType === 'connected') {
    return [
      event('RobotConnected', state, eventId, at, {
        sessionIdentifier: presence.sessionIdentifier,
        versionNumber: presence.versionNumber,
        timestamp: presence.timestamp,
        ...(presence.ipAddress ? { ipAddress: presence.ipAddress } : {}),
      }),
    ];
  }
  // A dropped link is not a stopped operator (LeKiwi is driven over the LAN, not through the cloud): an open session
  // stays open, unconfirmed (evolve), until the agent states its teleoperation on reconnecting, or the offline timeout.
  return [
    event('RobotDisconnected', state, eventId, at, {
      sessionIdentifier: presence.sessionIdentifier,
      versionNumber: presence.versionNumber,
      clientInitiated: presence.clientInitiatedDisconnect,
      timestamp: presence.timestamp,
      ...(presence.disconnectReason ? { reason: presence.disconnectReason } : {}),
    }),
  ];
}

function decideAlerts(state: RobotState, sample: TelemetrySample): DomainEvent[] {
  const events: DomainEvent[] = [];
  for (const [metric, threshold] of Object.entries(ALERT_THRESHOLDS) as [keyof typeof ALERT_THRESHOLDS, NonNullable<(typeof ALERT_THRESHOLDS)[keyof typeof ALERT_THRESHOLDS]>][]) {
    const value = sample[metric];
    if (value === undefined) continue;
    const change = alertChange(threshold, value, state.alerts[metric] !== undefined);
    const eventId = `alert:${metric}:${sample.sampledAt}:${change}`;
    if (change === 'raise') {
      events.push(
        event('AlertRaised', state, eventId, sample.sampledAt, {
          metric,
          severity: threshold.severity,
          value,
          threshold: threshold.raiseAt,
        }),
      );
    } else if (change === 'clear') {
      events.push(event('AlertCleared', state, eventId, sample.sampledAt, { metric, value, threshold: threshold.clearBelow }));
    }
  }
  return events;
}

function decideAgentEvent(state: RobotState, agentEvent: AgentEvent): DomainEvent[] {
  switch (agentEvent.type) {
    case 'TeleoperationStarted': {
      // A start while a session is open means the stop was lost (agent restart): close the old session first.
      const superseded = state.teleoperation.active
        ? [
            event('TeleoperationStopped', state, `${agentEvent.eventId}:superseded`, agentEvent.occurredAt, {
              reason: 'superseded',
              ...durationSince(state.teleoperation.since, agentEvent.occurredAt),
            }),
          ]
        : [];
      return [...superseded, event('TeleoperationStarted', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    }
    case 'TeleoperationState':
      return decideTeleoperationState(state, agentEvent);
    case 'TeleoperationStopped':
      // Already closed (by the offline timeout, or a statement that it was idle): the agent's late stop adds nothing.
      if (!state.teleoperation.active) return [];
      return [event('TeleoperationStopped', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    case 'EventsDropped':
      // A fact about the robot's own record, whatever its state: recorded as it came, once per eventId.
      return [event('RobotEventsDropped', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    case 'ProvisioningFailed':
      // History of its first boot, reported once it could talk: recorded as it came, once per eventId.
      return [event('ProvisioningFailed', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    case 'CertificateRotationFailed': {
      // The robot stays on its certificate; recorded once per eventId, as it came, except that a certificate the
      // cloud issued for this request and the robot does not name (its reply was lost: NO_REPLY) is named for it, so
      // the certificate retirer deactivates it.
      const open = state.certificate?.issued;
      const { data } = agentEvent;
      const unnamed =
        !data.abandonedCertificateId && open?.requestId === data.requestId && open.certificateId !== data.certificateId
          ? { abandonedCertificateId: open.certificateId }
          : {};
      return [event('CertificateRotationFailed', state, agentEvent.eventId, agentEvent.occurredAt, { ...data, ...unnamed })];
    }
    case 'UpdateDeferred': {
      // One deferral per stretch: the robot may say it again while it waits.
      const current = state.deployment;
      if (current?.jobId === agentEvent.data.jobId && current.state === 'deferred') return [];
      return [event('RobotUpdateDeferred', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    }
    case 'UpdateStarted':
      // Recorded as it came, even for an older job (evolve keeps a newer job's update as it is).
      return [event('RobotUpdateStarted', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    case 'UpdateSucceeded':
      // One terminal outcome per attempt: an end already recorded (IoT Jobs' timeout before the robot's late word) stands.
      if (jobEnded(state, agentEvent.data.jobId)) return [];
      if (agentEvent.data.kind === 'rollback') {
        // The robot does not know which deployment its rollback undoes; the orchestrator's RobotUpdateQueued said.
        const current = state.deployment;
        return [
          event('RobotUpdateRolledBack', state, agentEvent.eventId, agentEvent.occurredAt, {
            ...agentEvent.data,
            kind: 'rollback',
            parentDeploymentId: current?.jobId === agentEvent.data.jobId ? (current.parentDeploymentId ?? null) : null,
          }),
        ];
      }
      return [event('RobotUpdateSucceeded', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    case 'UpdateFailed':
      if (jobEnded(state, agentEvent.data.jobId)) return [];
      // Whatever the message says, the agent is the robot: its failures are the robot's word.
      return [event('RobotUpdateFailed', state, agentEvent.eventId, agentEvent.occurredAt, { ...agentEvent.data, source: 'robot' })];
    case 'SoftwareState': {
      const previous = softwareOf(state).version;
      if (agentEvent.data.version === previous) return [];
      return [event('SoftwareVersionReported', state, agentEvent.eventId, agentEvent.occurredAt, { version: agentEvent.data.version, previous })];
    }
    default:
      return assertNever(agentEvent);
  }
}

/**
 * The agent's word on teleoperation after (re)connecting. It confirms the open session (same start, or no start
 * given by a client that is not our agent), closes it (idle), or opens the one the cloud did not know of (from when
 * it began); a different start means the session the cloud holds is not the one running now.
 */
function decideTeleoperationState(state: RobotState, statement: Extract<AgentEvent, { type: 'TeleoperationState' }>): DomainEvent[] {
  const { eventId, occurredAt, data } = statement;
  const open = state.teleoperation;
  if (!data.active) {
    if (!open.active) return [];
    return [event('TeleoperationStopped', state, eventId, occurredAt, { reason: 'agent-idle', ...durationSince(open.since, occurredAt) })];
  }
  const start = () =>
    event('TeleoperationStarted', state, eventId, data.since ?? occurredAt, {
      ...(data.operatorAddress !== undefined ? { operatorAddress: data.operatorAddress } : {}),
      signals: data.signals,
      ...(data.score !== undefined ? { score: data.score } : {}),
    });
  if (!open.active) return [start()];
  if (data.since !== undefined && open.since !== null && Date.parse(data.since) !== Date.parse(open.since)) {
    return [
      event('TeleoperationStopped', state, `${eventId}:superseded`, occurredAt, {
        reason: 'superseded',
        ...durationSince(open.since, occurredAt),
      }),
      start(),
    ];
  }
  return teleoperationConfirmed(open) ? [] : [event('TeleoperationConfirmed', state, eventId, occurredAt, {})];
}

/** RobotProvisioned's id: one per certificate admitted, whoever decides it again (a retried hook, IoT's retry). */
export function provisionedEventId(certificateId: string): string {
  return `provisioned:${certificateId}`;
}

function durationSince(since: string | null, at: string): { durationMs?: number } {
  if (!since) return {};
  const ms = Date.parse(at) - Date.parse(since);
  return Number.isFinite(ms) && ms >= 0 ? { durationMs: ms } : {};
}

function event<T extends DomainEvent['type']>(
  type: T,
  state: RobotState,
  eventId: string,
  at: string,
  data: EventOf<T>['data'],
): EventOf<T> {
  return { eventId, robotId: state.robotId, at, version: 1, type, data } as EventOf<T>;
}
