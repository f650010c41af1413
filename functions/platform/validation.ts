import type { z } from 'zod';

/** One bad field of an input, named the way the caller wrote it (`body.reason`, `robotIds.0`). */
export interface FieldProblem {
  readonly field: string;
  readonly message: string;
}

/**
 * zod issues as field problems. `fallback` names the whole input when an issue has no path (a body that is not an
 * object); an unknown key becomes a problem of its own so the caller sees its exact name.
 */
export function fieldProblems(error: z.ZodError, fallback: string): FieldProblem[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ field: [...issue.path, key].join('.'), message: 'is not a known field' }));
    }
    return [{ field: issue.path.length > 0 ? issue.path.join('.') : fallback, message: issue.message }];
  });
}
