import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/**
 * Counts every request the client sends (by operation), the transactions cancelled (`cancelled`: any reason, e.g. a
 * failed condition) and those cancelled by a conflict with another transaction (`conflicts`).
 */
export function countRequests(client: DynamoDBClient) {
  const byOperation = new Map<string, number>();
  let conflicts = 0;
  let cancelled = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = String(context.commandName ?? 'unknown').replace(/Command$/, '');
      byOperation.set(operation, (byOperation.get(operation) ?? 0) + 1);
      try {
        return await next(args);
      } catch (error) {
        const reasons = (error as { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? [];
        if ((error as Error).name === 'TransactionCanceledException') cancelled++;
        if (reasons.some((reason) => reason.Code === 'TransactionConflict')) conflicts++;
        throw error;
      }
    },
    // `finalizeRequest` runs once per attempt, after the SDK's own retry middleware: each round trip is counted.
    { step: 'finalizeRequest', name: 'benchRoundTrips' },
  );
  return {
    snapshot: () => ({ byOperation: new Map(byOperation), conflicts, cancelled }),
    reset: () => {
      byOperation.clear();
      conflicts = 0;
      cancelled = 0;
    },
  };
}
