import { z } from 'zod';
import { RobotId } from '../../../schemas/index.js';
import type { FieldProblem } from '../../platform/validation.js';
import { claimedId, problemsOf } from './problems.js';
import { unstorableNumbers } from './storable-numbers.js';

export type ThingMessage<T> =
  | { readonly valid: true; readonly robotId: string; readonly body: T }
  | { readonly valid: false; readonly rejection: { readonly robotId: string | null; readonly problems: readonly FieldProblem[] } };

const AnObject = z.object({});

/**
 * A message from a robot's own topic: the agent's JSON plus `thingName`, which the topic rule adds from `topic(3)`.
 * The thing policy lets a robot publish only under its own name, so `thingName` is trusted over the body. Every
 * problem is reported at once, the thing name's and the body's.
 */
export function readThingMessage<S extends z.ZodType>(payload: unknown, body: S): ThingMessage<z.infer<S>> {
  const shape = AnObject.safeParse(payload);
  if (!shape.success) return { valid: false, rejection: { robotId: null, problems: problemsOf(shape.error) } };
  const { thingName, ...rest } = payload as Record<string, unknown>;
  const robotId = RobotId.safeParse(thingName);
  const parsed = body.safeParse(rest);
  const problems = [
    ...problemsOf(robotId.error ? underField(robotId.error, 'thingName') : undefined),
    ...(parsed.success ? unstorableNumbers(parsed.data) : problemsOf(parsed.error)),
  ];
  if (problems.length > 0 || !robotId.success || !parsed.success) {
    return { valid: false, rejection: { robotId: claimedId(payload, 'thingName'), problems } };
  }
  return { valid: true, robotId: robotId.data, body: parsed.data };
}

/** A scalar's issues under the name of the field it came from. */
function underField(error: z.ZodError, field: string): z.ZodError {
  return new z.ZodError(error.issues.map((issue) => ({ ...issue, path: [field, ...issue.path] })));
}
