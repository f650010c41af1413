import { describe, expect, it } from 'vitest';
import { StopSignals } from '../../local/stop-signals.js';

describe('StopSignals: one Ctrl-C relayed by npm and tsx is one stop', () => {
  const at = (times: number[]) => {
    let i = 0;
    const signals = new StopSignals(3_000, () => times[i++]!);
    return times.map(() => signals.receive());
  };

  it('starts the orderly stop on the first signal and ignores its relays', () => {
    expect(at([1_000, 1_001, 1_030, 4_000])).toEqual(['stop', 'ignore', 'ignore', 'ignore']);
  });

  it('exits at once on a signal after the relay window', () => {
    expect(at([1_000, 1_010, 4_001, 9_000])).toEqual(['stop', 'ignore', 'exit-now', 'exit-now']);
  });
});
