import { describe, expect, it } from 'vitest';
import { settleConcurrently } from '../../../functions/platform/concurrency.js';

describe('settleConcurrently', () => {
  it('runs at most `limit` at once, settles every item, and keeps the order of the items', async () => {
    // Given work that records how many run at the same time, and fails for some items
    let running = 0;
    let mostAtOnce = 0;
    const work = async (item: number) => {
      running++;
      mostAtOnce = Math.max(mostAtOnce, running);
      await new Promise((resolve) => setTimeout(resolve, (item * 7) % 5));
      running--;
      if (item % 4 === 0) throw new Error(`item ${item} failed`);
      return item * 10;
    };

    // When 20 items are worked through, 3 at a time
    const results = await settleConcurrently(Array.from({ length: 20 }, (_, index) => index), 3, work);

    // Then never more than 3 ran together, and each result is in its item's place
    expect(mostAtOnce).toBe(3);
    expect(results).toHaveLength(20);
    results.forEach((result, index) => {
      if (index % 4 === 0) expect(result).toEqual({ status: 'rejected', reason: new Error(`item ${index} failed`) });
      else expect(result).toEqual({ status: 'fulfilled', value: index * 10 });
    });
  });

  it('settles an empty list at once', async () => {
    expect(await settleConcurrently([], 5, async () => 1)).toEqual([]);
  });
});
