import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { JsonLinesDeadLetters } from '../functions/adapters/file-dead-letters.js';
import type { DeadLetter, DeadLetters } from '../functions/app/dead-letters.js';

/**
 * The local cloud's dead-letter "queue" of the stream projector: a JSON-lines file under the state dir (the SQS
 * queue in AWS). The projector handler writes it when `DEAD_LETTER_FILE` names it (set it in the environment
 * before the handler is first loaded); `count()` is what `/health` shows.
 */
export interface FileDeadLetters extends DeadLetters {
  readonly path: string;
  /** Records set aside so far (0 when the file does not exist yet). */
  count(): Promise<number>;
  /** Every record set aside, oldest first. A line that is not JSON (a write cut short) is skipped. */
  read(): Promise<DeadLetter[]>;
}

/** The environment variable the projector handler takes the file from. */
export const DEAD_LETTER_FILE_ENV = 'DEAD_LETTER_FILE';

/** Where the local cloud keeps the projector's dead letters: `<stateDir>/dead-letters/stream-projector.jsonl`. */
export function projectorDeadLetterFile(stateDir: string): string {
  return join(stateDir, 'dead-letters', 'stream-projector.jsonl');
}

export function createFileDeadLetters(path: string): FileDeadLetters {
  const writer = new JsonLinesDeadLetters(path);
  const read = async (): Promise<DeadLetter[]> => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return text.split('\n').flatMap((line) => {
      if (line.trim() === '') return [];
      try {
        return [JSON.parse(line) as DeadLetter];
      } catch {
        return [];
      }
    });
  };
  return {
    path,
    setAside: (letters) => writer.setAside(letters),
    count: async () => (await read()).length,
    read,
  };
}
