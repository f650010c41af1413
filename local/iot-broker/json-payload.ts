/** A reserved-topic request's payload as a JSON object, or what is wrong with it (the rejection's message). */
export function jsonObjectOf(
  payload: Buffer,
): { readonly ok: true; readonly body: Record<string, unknown> } | { readonly ok: false; readonly problem: string } {
  let body: unknown;
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, problem: 'the payload is not JSON' };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: false, problem: 'the payload is not a JSON object' };
  return { ok: true, body: body as Record<string, unknown> };
}
