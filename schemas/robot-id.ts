import { z } from 'zod';

/** The robot models of the fleet; a robot id (= thing name = MQTT client id) starts with one of them. */
export const ROBOT_MODELS = ['lekiwi', 'xle'] as const;
export const RobotModel = z.enum(ROBOT_MODELS);
export type RobotModel = z.infer<typeof RobotModel>;

/** A robot's lifecycle stage (functions/domain/lifecycle.ts derives it). */
export const LIFECYCLES = ['discovered', 'provisioning', 'ready', 'active', 'maintenance', 'offline', 'failed'] as const;
export const Lifecycle = z.enum(LIFECYCLES);
export type Lifecycle = z.infer<typeof Lifecycle>;

/**
 * `<model>-<serial>`, e.g. `lekiwi-LK0001` or `xle-XL0007`. The serial is what the factory registered: letters,
 * digits, `_` and `-`, at most 64 characters so the whole id stays within IoT Core's 128-character thing name limit.
 */
export const ROBOT_ID_PATTERN = /^(lekiwi|xle)-[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export const RobotId = z
  .string()
  .regex(ROBOT_ID_PATTERN, 'must be <model>-<serial> with model lekiwi or xle, e.g. lekiwi-LK0001');
export type RobotId = z.infer<typeof RobotId>;

export function modelOf(robotId: string): RobotModel {
  const model = robotId.slice(0, robotId.indexOf('-'));
  return RobotModel.parse(model);
}
