import { performance } from 'node:perf_hooks';
import type { EventLogReplay } from './ports.js';
import type { ProjectionItem, ReadModelWriter } from './read-model-writer.js';

export interface RebuildProgress {
  /** Events applied so far. */
  readonly events: number;
  /** Heads whose latest telemetry sample was applied so far. */
  readonly heads: number;
  readonly elapsedMs: number;
}

export interface RebuildOptions {
  /** Items per transaction. */
  readonly chunkSize?: number;
  /** Called after every chunk. */
  readonly onProgress?: (progress: RebuildProgress) => void;
}

/**
 * Rebuilds the read models from the event log: empties them, replays every event in order, then each robot's latest
 * telemetry from its head. The replay goes through the projector's own writer in chunks, so a rebuilt read model is
 * what the incremental projection would have produced. The read models are incomplete while it runs; pause the
 * stream projector (its event source mapping) meanwhile, it catches up from the stream afterwards.
 */
export async function rebuildReadModels(
  log: EventLogReplay,
  writer: ReadModelWriter,
  options: RebuildOptions = {},
): Promise<RebuildProgress> {
  const chunkSize = options.chunkSize ?? 1000;
  const started = performance.now();
  let events = 0;
  let heads = 0;
  let chunk: ProjectionItem[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    await writer.applyBatch(chunk);
    for (const item of chunk) {
      if (item.kind === 'event') events++;
      else heads++;
    }
    chunk = [];
    options.onProgress?.({ events, heads, elapsedMs: performance.now() - started });
  };

  await writer.reset();
  for await (const recorded of log.replayAll()) {
    chunk.push({ kind: 'event', recorded });
    if (chunk.length >= chunkSize) await flush();
  }
  await flush();
  for await (const head of log.replayHeads()) {
    if (!head.telemetry) continue;
    chunk.push({ kind: 'head', head: { ...head, telemetryChanged: true } });
    if (chunk.length >= chunkSize) await flush();
  }
  await flush();
  return { events, heads, elapsedMs: performance.now() - started };
}
