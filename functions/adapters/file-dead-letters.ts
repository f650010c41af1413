import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DeadLetter, DeadLetters } from '../app/dead-letters.js';

/**
 * Dead letters in a JSON-lines file, one record per line, appended: the local cloud's stand-in for the projector's
 * dead-letter queue (`DEAD_LETTER_FILE`, under its state dir; local/file-dead-letters.ts reads and counts it). One
 * `appendFile` per call, so a batch's letters land together and concurrent writers do not interleave lines.
 */
export class JsonLinesDeadLetters implements DeadLetters {
  constructor(readonly path: string) {}

  async setAside(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    await mkdir(dirname(this.path), { recursive: true });
    await appendFile(this.path, letters.map((letter) => `${JSON.stringify(letter)}\n`).join(''), 'utf8');
  }
}
