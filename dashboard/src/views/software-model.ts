import type { RobotSoftwareView, RobotView } from '../../../schemas/index.js';

/**
 * The software a robot runs and the update it is in (RobotView.software, issue 12), for the fleet's Version column
 * and the robot's page. Read so the page works before and after the API has the field: a view without it is
 * "unknown" (null), not an error.
 */
export function softwareOf(view: RobotView): RobotSoftwareView | null {
  const software = (view as RobotView & { software?: RobotSoftwareView | null }).software;
  return software ?? null;
}

export const UPDATE_STATE_TEXT: Record<NonNullable<RobotSoftwareView['update']>['state'], string> = {
  queued: 'queued',
  deferred: 'deferred while teleoperated',
  installing: 'installing',
};

/** The version column's sort value: the version, or undefined when unknown (sorts last). */
export function versionSortValue(view: RobotView): string | undefined {
  return softwareOf(view)?.version ?? undefined;
}

/** "updating to 1.5.0 (installing)" while an update is open, else null. */
export function updateText(software: RobotSoftwareView | null): string | null {
  const update = software?.update;
  if (!update) return null;
  return `updating to ${update.version} (${UPDATE_STATE_TEXT[update.state] ?? update.state})`;
}
