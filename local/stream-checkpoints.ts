import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { StreamCheckpoints } from './stream-poller.js';

/**
 * A stream consumer's shard positions in a JSON file, so the local cloud restarted on the same state dir neither
 * replays the whole stream to the consumers nor skips what was written while it was down (Lambda's event source
 * mapping keeps these for you). Positions of another stream (the table or stream was recreated) are ignored. Used
 * for DynamoDB streams (stream-poller.ts) and Kinesis streams (kinesis-poller.ts): both name a shard's position by
 * a decimal sequence number.
 */
const CheckpointFile = z.object({ streamArn: z.string(), shards: z.record(z.string(), z.string().regex(/^\d+$/)) });

export class FileStreamCheckpoints implements StreamCheckpoints {
  /** Saves run one after another: two shards' readers must not write the file at the same time. */
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private readonly streamArn: string,
    private readonly shards: Map<string, string>,
  ) {}

  /** Loads the positions saved for `streamArn`; a missing file starts empty, an unreadable one is an error. */
  static async open(path: string, streamArn: string): Promise<FileStreamCheckpoints> {
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const shards = new Map<string, string>();
    if (text !== undefined) {
      let parsed;
      try {
        parsed = CheckpointFile.safeParse(JSON.parse(text));
      } catch {
        parsed = undefined;
      }
      if (!parsed?.success) {
        throw new Error(`${path} is not a stream checkpoint file; delete it to read the stream again from its start`);
      }
      if (parsed.data.streamArn === streamArn) {
        for (const [shardId, sequenceNumber] of Object.entries(parsed.data.shards)) shards.set(shardId, sequenceNumber);
      }
    }
    return new FileStreamCheckpoints(path, streamArn, shards);
  }

  get(shardId: string): string | undefined {
    return this.shards.get(shardId);
  }

  set(shardId: string, sequenceNumber: string): Promise<void> {
    this.shards.set(shardId, sequenceNumber);
    const save = this.saving.then(() => this.save());
    this.saving = save.catch(() => {});
    return save;
  }

  private async save(): Promise<void> {
    const file = { streamArn: this.streamArn, shards: Object.fromEntries(this.shards) };
    await mkdir(dirname(this.path), { recursive: true });
    // Written whole and renamed into place: a crash leaves the previous positions, never half a file.
    const temporary = `${this.path}.tmp`;
    await writeFile(temporary, JSON.stringify(file));
    await rename(temporary, this.path);
  }
}
