import { useSyncExternalStore } from 'react';

/**
 * One shared wall clock for ages and "open for" durations, ticking every TICK_MS while anything listens: the cells
 * that show an age re-render on a tick, the rows around them do not.
 */
export const TICK_MS = 5_000;

const listeners = new Set<() => void>();
let now = Date.now();
let timer: ReturnType<typeof setInterval> | undefined;

function subscribe(listener: () => void): () => void {
  if (listeners.size === 0) {
    now = Date.now();
    timer = setInterval(() => {
      now = Date.now();
      for (const l of listeners) l();
    }, TICK_MS);
  }
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

const getNow = (): number => now;

/** The wall clock (epoch ms), updated every TICK_MS. */
export function useNow(): number {
  return useSyncExternalStore(subscribe, getNow, getNow);
}
