import { describe, expect, it } from 'vitest';
import { planShards, type DescribedShard, type ShardProgress } from '../../local/stream-shards.js';

const root: DescribedShard = { shardId: 'shard-root', closed: true };
const child: DescribedShard = { shardId: 'shard-child', parentShardId: 'shard-root', closed: true };
const grandchild: DescribedShard = { shardId: 'shard-grandchild', parentShardId: 'shard-child', closed: false };
const lineage = [root, child, grandchild];
const progress = (entries: Record<string, ShardProgress>) => new Map(Object.entries(entries));

describe('planShards', () => {
  it('reads a lineage from the oldest shard, one generation at a time', () => {
    // Given a root, its child and grandchild, nothing read yet
    // When planned at TRIM_HORIZON, then again while the root is read, then once it is drained
    const first = planShards(lineage, progress({}), 'TRIM_HORIZON', true);
    const whileReading = planShards(lineage, progress({ 'shard-root': 'reading' }), 'TRIM_HORIZON', false);
    const afterRoot = planShards(lineage, progress({ 'shard-root': 'drained' }), 'TRIM_HORIZON', false);

    // Then only the root starts, nothing while it is read, then the child (never the grandchild ahead of it)
    expect(first).toEqual({ start: [{ shardId: 'shard-root', iteratorType: 'TRIM_HORIZON' }], skip: [] });
    expect(whileReading.start).toEqual([]);
    expect(afterRoot.start).toEqual([{ shardId: 'shard-child', iteratorType: 'TRIM_HORIZON' }]);
  });

  it('starts a shard whose parent has aged out of the stream', () => {
    const plan = planShards([child, grandchild], progress({}), 'TRIM_HORIZON', true);

    expect(plan.start.map((s) => s.shardId)).toEqual(['shard-child']);
  });

  it('at LATEST reads only the open shards, skips the closed ones, and reads later children from their start', () => {
    // Given the lineage described for the first time, then a new child of the open shard later on
    const first = planShards(lineage, progress({}), 'LATEST', true);
    const newChild: DescribedShard = { shardId: 'shard-new', parentShardId: 'shard-grandchild', closed: false };
    const later = planShards(
      [...lineage, newChild],
      progress({ 'shard-root': 'drained', 'shard-child': 'drained', 'shard-grandchild': 'drained' }),
      'LATEST',
      false,
    );

    // Then
    expect(first).toEqual({ start: [{ shardId: 'shard-grandchild', iteratorType: 'LATEST' }], skip: ['shard-root', 'shard-child'] });
    expect(later).toEqual({ start: [{ shardId: 'shard-new', iteratorType: 'TRIM_HORIZON' }], skip: [] });
  });

  it('never starts a shard twice', () => {
    const plan = planShards(lineage, progress({ 'shard-root': 'drained', 'shard-child': 'reading' }), 'TRIM_HORIZON', false);

    expect(plan.start).toEqual([]);
  });
});
