import type { RobotView } from '../../../schemas/index.js';
import { useNow } from './clock.js';
import type { FleetStatus } from './fleet-model.js';
import { formatDuration } from './format.js';

/**
 * Small pieces of text that carry the truth by colour AND by word (never colour alone): status, lifecycle, health.
 * Colours: failed and critical are red, warnings and stale amber, offline grey, only healthy-and-online green.
 */

/** "5 min" since `at` (epoch ms), ticking with the shared clock; `baseMs` is an age the cloud already measured. */
export function Age(props: { at: number | null; baseMs?: number }) {
  const now = useNow();
  if (props.at === null) return <>—</>;
  return <>{formatDuration(Math.max(props.baseMs ?? 0, now - props.at))}</>;
}

/**
 * Presence and the age of the robot's last word. Green only for an online robot that is also healthy: an online robot
 * that failed or has a critical alert is shown online in neutral colours (its health cell says why).
 */
export function StatusBadge(props: { status: FleetStatus; lastWordAt: number | null; healthy: boolean }) {
  const tone = props.status === 'online' && !props.healthy ? ' status-online-unhealthy' : '';
  return (
    <span className={`badge status-${props.status}${tone}`}>
      {props.status}
      {props.lastWordAt !== null && (
        <span className="badge-age">
          {' · '}
          <Age at={props.lastWordAt} />
        </span>
      )}
    </span>
  );
}

export function LifecycleBadge(props: { lifecycle: RobotView['lifecycle'] }) {
  return <span className={`badge lifecycle-${props.lifecycle}`}>{props.lifecycle}</span>;
}

/** "deployable", "healthy", "failed" or "unhealthy": green only for a robot one could send out now. */
export function healthOf(view: RobotView): { key: 'deployable' | 'healthy' | 'failed' | 'unhealthy'; text: string } {
  if (view.lifecycle === 'failed') return { key: 'failed', text: 'failed' };
  if (!view.healthy) return { key: 'unhealthy', text: 'unhealthy' };
  return view.deployable ? { key: 'deployable', text: 'deployable' } : { key: 'healthy', text: 'healthy' };
}

export function HealthBadge(props: { view: RobotView }) {
  const health = healthOf(props.view);
  return <span className={`badge health-${health.key}`}>{health.text}</span>;
}
