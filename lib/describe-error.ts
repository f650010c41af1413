/**
 * One line that says what went wrong, for logs and for the messages people read, whatever was thrown:
 * - an Error: its message, after its name when the name says more than "Error" (`TimeoutError: …`);
 * - a zod validation error: each issue as `path: message`, joined with `; `;
 * - the AWS CRT's error objects (`{ error_name, message }`), strings, and anything else as JSON.
 */
export function describeError(error: unknown): string {
  if (isValidationError(error)) {
    return error.issues.map((issue) => `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`).join('; ');
  }
  if (error instanceof Error) return error.name && error.name !== 'Error' ? `${error.name}: ${error.message}` : error.message;
  if (typeof error === 'string') return error;
  const fields = error as { error_name?: unknown; message?: unknown } | null | undefined;
  if (typeof fields?.message === 'string') {
    return typeof fields.error_name === 'string' ? `${fields.error_name}: ${fields.message}` : fields.message;
  }
  if (typeof fields?.error_name === 'string') return fields.error_name;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

interface ValidationError {
  readonly issues: readonly { readonly path: readonly PropertyKey[]; readonly message: string }[];
}

/** zod's errors, recognised by shape so that this module depends on nothing. */
function isValidationError(error: unknown): error is ValidationError {
  return error instanceof Error && error.name === 'ZodError' && Array.isArray((error as Partial<ValidationError>).issues);
}
