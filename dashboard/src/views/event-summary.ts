import type { EventView } from '../../../schemas/index.js';
import { formatBytes, formatDuration, formatMetricValue, metricLabel, parseTime } from './format.js';

/**
 * A short human sentence for each domain event (schemas/events.ts), and the teleoperation sessions a robot's loaded
 * timeline shows. Data is read defensively: an event of a newer version with other fields still gets a summary.
 */

const str = (data: Record<string, unknown>, key: string): string | undefined =>
  typeof data[key] === 'string' ? (data[key] as string) : undefined;
const num = (data: Record<string, unknown>, key: string): number | undefined =>
  typeof data[key] === 'number' ? (data[key] as number) : undefined;

export function summarizeEvent(event: EventView): string {
  const d = event.data;
  switch (event.type) {
    case 'RobotRegistered':
      return `Registered as ${str(d, 'model') ?? 'a robot'}`;
    case 'RobotConnected': {
      const ip = str(d, 'ipAddress');
      return `Connected${ip ? ` from ${ip}` : ''}`;
    }
    case 'RobotDisconnected': {
      const reason = str(d, 'reason');
      return `Disconnected${d.clientInitiated === true ? ' by the robot' : ''}${reason ? ` (${reason})` : ''}`;
    }
    case 'AlertRaised': {
      const metric = str(d, 'metric') ?? '?';
      const value = num(d, 'value');
      const threshold = num(d, 'threshold');
      return `${str(d, 'severity') ?? ''} alert: ${metricLabel(metric)} ${value === undefined ? '' : formatMetricValue(metric, value)}${
        threshold === undefined ? '' : ` ≥ ${formatMetricValue(metric, threshold)}`
      }`.trim();
    }
    case 'AlertCleared': {
      const metric = str(d, 'metric') ?? '?';
      const value = num(d, 'value');
      return `Alert cleared: ${metricLabel(metric)} back to ${value === undefined ? '?' : formatMetricValue(metric, value)}`;
    }
    case 'TeleoperationStarted': {
      const operator = str(d, 'operatorAddress');
      const signals = Array.isArray(d.signals) ? d.signals.filter((s) => typeof s === 'string') : [];
      return `Teleoperation started${operator ? ` by ${operator}` : ''}${signals.length ? ` (signals: ${signals.join(', ')})` : ''}`;
    }
    case 'TeleoperationStopped': {
      const duration = num(d, 'durationMs');
      return `Teleoperation stopped${duration === undefined ? '' : ` after ${formatDuration(duration)}`} (${str(d, 'reason') ?? 'no reason'})`;
    }
    case 'TeleoperationConfirmed':
      return 'Teleoperation confirmed by the robot after its link came back';
    case 'RobotMarkedFailed':
      return `Marked failed by ${str(d, 'by') || 'someone'}: ${str(d, 'reason') ?? ''}`;
    case 'RobotRecovered': {
      const note = str(d, 'note');
      return `Recovered by ${str(d, 'by') || 'someone'}${note ? `: ${note}` : ''}`;
    }
    case 'RobotEventsDropped':
      return `The robot lost ${num(d, 'count') ?? '?'} of its events (offline queue full)`;
    case 'DeviceMessagesRejected':
      return `${num(d, 'count') ?? '?'} of the robot's messages refused: ${str(d, 'lastReason') ?? ''}`;
    case 'RobotUpdateQueued': {
      const batch = num(d, 'batch');
      return `${d.kind === 'rollback' ? 'Rollback to' : 'Update to'} ${str(d, 'version') ?? '?'} queued${batch === undefined ? '' : ` in batch ${batch}`} of ${str(d, 'deploymentId') ?? 'a deployment'}`;
    }
    case 'RobotUpdateDeferred': {
      const reason = str(d, 'reason');
      return `Update to ${str(d, 'version') ?? '?'} put off: ${reason === 'teleoperation' ? 'the robot is being driven' : (reason ?? 'no reason')}; it starts when that ends`;
    }
    case 'RobotUpdateStarted': {
      const files = num(d, 'filesToFetch');
      const bytes = num(d, 'bytesToFetch');
      return `${d.kind === 'rollback' ? 'Rolling back' : 'Installing'} ${fromTo(d)}${
        files === undefined ? '' : `: ${files} ${files === 1 ? 'file' : 'files'}${bytes === undefined ? '' : ` (${formatBytes(bytes)})`} to fetch`
      }`;
    }
    case 'RobotUpdateSucceeded':
    case 'RobotUpdateRolledBack': {
      const files = num(d, 'filesFetched');
      const bytes = num(d, 'bytesFetched');
      const duration = num(d, 'durationMs');
      return `${event.type === 'RobotUpdateRolledBack' ? 'Rolled back' : 'Updated'} ${fromTo(d)}${duration === undefined ? '' : ` in ${formatDuration(duration)}`}${
        files === undefined ? '' : `, ${files} ${files === 1 ? 'file' : 'files'} fetched${bytes === undefined ? '' : ` (${formatBytes(bytes)})`}`
      }`;
    }
    case 'RobotUpdateFailed': {
      const step = str(d, 'step');
      const detail = str(d, 'detail');
      const running = d.runningVersion === null ? 'no release' : str(d, 'runningVersion');
      return `${d.kind === 'rollback' ? 'Rollback' : 'Update'} to ${str(d, 'version') ?? '?'} failed: ${str(d, 'reason') ?? 'no reason'}${step ? ` at ${step}` : ''}${
        detail ? ` (${detail})` : ''
      }${running ? `; runs ${running}` : ''}${d.source === 'jobs' ? ' — ended by IoT Jobs, not reported by the robot' : ''}`;
    }
    case 'SoftwareVersionReported': {
      const version = d.version === null ? 'no release' : (str(d, 'version') ?? '?');
      const previous = d.previous === null ? 'no release' : str(d, 'previous');
      return `Runs ${version}${previous ? ` (was ${previous})` : ''}`;
    }
    case 'RobotProvisioned':
      return `Provisioned by claim (${d.claim === 'reimage' ? 're-image' : 'first boot'}) as serial ${str(d, 'serial') ?? '?'} of batch ${str(d, 'batch') ?? '?'}`;
    case 'CertificateIssued':
      return `Certificate issued for rotation ${str(d, 'requestId') ?? '?'}`;
    case 'CertificateRotated':
      return `Certificate rotated (${shortId(str(d, 'oldCertificateId'))} → ${shortId(str(d, 'newCertificateId'))})`;
    case 'CertificateRotationFailed':
      return d.reason === 'REIMAGED'
        ? 'Rotation abandoned: the robot was re-imaged'
        : `Certificate rotation failed: ${str(d, 'reason') ?? 'no reason'}${str(d, 'detail') ? ` (${str(d, 'detail')})` : ''}`;
    case 'ProvisioningFailed':
      return `Provisioning failed: ${str(d, 'reason') ?? 'no reason'}${str(d, 'step') ? ` at ${str(d, 'step')}` : ''}`;
    default: {
      const json = JSON.stringify(d);
      return json.length > 120 ? `${json.slice(0, 119)}…` : json;
    }
  }
}

/** A certificate id's first 8 hex digits, as people compare them. */
function shortId(id: string | undefined): string {
  return id ? id.slice(0, 8) : '?';
}

function fromTo(d: Record<string, unknown>): string {
  const from = d.fromVersion === null ? 'no release' : str(d, 'fromVersion');
  return `${from ? `${from} → ` : ''}${str(d, 'version') ?? '?'}`;
}

/** The event type column's words: the update events by name, any other type with its words split ("Robot connected"). */
const EVENT_LABELS: Readonly<Record<string, string>> = {
  RobotUpdateQueued: 'Update queued',
  RobotUpdateDeferred: 'Update deferred',
  RobotUpdateStarted: 'Update started',
  RobotUpdateSucceeded: 'Update succeeded',
  RobotUpdateFailed: 'Update failed',
  RobotUpdateRolledBack: 'Rolled back',
  SoftwareVersionReported: 'Software version',
};

export function eventLabel(type: string): string {
  const known = EVENT_LABELS[type];
  if (known) return known;
  const words = type.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export interface TeleoperationSession {
  readonly startedSeq: number;
  readonly startedAt: string;
  readonly operator: string | null;
  readonly stoppedAt: string | null;
  readonly durationMs: number | null;
  readonly reason: string | null;
}

/**
 * The sessions in a timeline (newest first in, newest first out): each TeleoperationStarted with the first
 * TeleoperationStopped after it. A stop whose start is older than the loaded events is left out; an open session has
 * no stop.
 */
export function teleoperationSessions(eventsNewestFirst: readonly EventView[]): TeleoperationSession[] {
  const sessions: TeleoperationSession[] = [];
  let pendingStop: EventView | null = null;
  for (const event of eventsNewestFirst) {
    if (event.type === 'TeleoperationStopped') pendingStop = event;
    else if (event.type === 'TeleoperationStarted') {
      const stop = pendingStop;
      pendingStop = null;
      const started = parseTime(event.at);
      const stoppedAt = stop ? stop.at : null;
      const given = stop ? num(stop.data, 'durationMs') : undefined;
      const stopped = parseTime(stoppedAt);
      sessions.push({
        startedSeq: event.seq,
        startedAt: event.at,
        operator: str(event.data, 'operatorAddress') ?? null,
        stoppedAt,
        durationMs: given ?? (started !== null && stopped !== null ? stopped - started : null),
        reason: stop ? (str(stop.data, 'reason') ?? null) : null,
      });
    }
  }
  return sessions;
}
