/**
 * Which shards of a DynamoDB stream to start reading, in lineage order. DynamoDB closes a shard and opens a child
 * (about every four hours, DynamoDB Local too); a child's records come after all of its parent's, so a reader that
 * keeps per-item order starts a child only once its parent is read to the end, as Lambda's event source mapping does.
 */

export interface DescribedShard {
  readonly shardId: string;
  readonly parentShardId?: string | undefined;
  /** The shard has an ending sequence number: it takes no more records and ends once read. */
  readonly closed: boolean;
}

export type ShardProgress = 'reading' | 'drained';

export type StartingPosition = 'TRIM_HORIZON' | 'LATEST';

export interface ShardPlan {
  /** Shards to start reading now, and where. */
  readonly start: readonly { readonly shardId: string; readonly iteratorType: StartingPosition }[];
  /** Closed shards passed over because reading began at LATEST: count them as drained. */
  readonly skip: readonly string[];
}

/**
 * @param firstLook true on the first description of the stream: that is when a LATEST start applies. Shards that
 *   appear later are children of shards being read, so they are read from their beginning.
 */
export function planShards(
  shards: readonly DescribedShard[],
  progress: ReadonlyMap<string, ShardProgress>,
  startingPosition: StartingPosition,
  firstLook: boolean,
): ShardPlan {
  if (firstLook && startingPosition === 'LATEST') {
    return {
      start: shards.filter((shard) => !shard.closed).map((shard) => ({ shardId: shard.shardId, iteratorType: 'LATEST' as const })),
      skip: shards.filter((shard) => shard.closed).map((shard) => shard.shardId),
    };
  }
  const described = new Set(shards.map((shard) => shard.shardId));
  const start = shards
    .filter((shard) => !progress.has(shard.shardId))
    .filter((shard) => {
      const parent = shard.parentShardId;
      // A parent no longer described has aged out of the stream (24 h): nothing left to wait for.
      return !parent || !described.has(parent) || progress.get(parent) === 'drained';
    })
    .map((shard) => ({ shardId: shard.shardId, iteratorType: 'TRIM_HORIZON' as const }));
  return { start, skip: [] };
}
