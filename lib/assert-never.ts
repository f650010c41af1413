/** The exhaustiveness check of a `switch` over a union: compiles only when every case is handled. */
export function assertNever(value: never): never {
  throw new Error(`Unexpected value: ${JSON.stringify(value)}`);
}
