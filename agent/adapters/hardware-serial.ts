import { readFile } from 'node:fs/promises';
import { SERIAL_PATTERN } from '../../schemas/provisioning.js';

/**
 * The robot's hardware serial, the `<serial>` of its thing name `<model>-<serial>` (schemas/provisioning.ts).
 *
 * On a Raspberry Pi it is the SoC serial: `/proc/device-tree/serial-number` (NUL-terminated, 16 hex digits on a Pi 4
 * or 5), else the `Serial` line of `/proc/cpuinfo`. agent.json `provisioning.serialSource` may instead name a file
 * whose first line is the serial (tests, and robots without one). Leading zeros are kept: the factory registers the
 * serial exactly as the Pi reports it.
 *
 * INVARIANT: the answer is a valid Serial or a HardwareSerialError naming the files read and what was wrong; never an
 * empty or guessed serial (a wrong one would claim another robot's allow-list entry).
 */

export class HardwareSerialError extends Error {
  override readonly name = 'HardwareSerialError';
}

export type SerialSource = 'raspberry-pi' | { readonly file: string };

export interface RaspberryPiPaths {
  readonly deviceTreeSerial: string;
  readonly cpuinfo: string;
}

export const RASPBERRY_PI_PATHS: RaspberryPiPaths = Object.freeze({
  deviceTreeSerial: '/proc/device-tree/serial-number',
  cpuinfo: '/proc/cpuinfo',
});

/** The serial from `source`; `paths` moves the Pi's files (tests point them at fixtures). */
export async function readHardwareSerial(source: SerialSource, paths: RaspberryPiPaths = RASPBERRY_PI_PATHS): Promise<string> {
  if (source !== 'raspberry-pi') {
    const content = await readOrUndefined(source.file);
    if (content === undefined) throw new HardwareSerialError(`serial file ${source.file} cannot be read`);
    return checked(content.split(/\r?\n/, 1)[0]!.trim(), source.file);
  }
  const tree = await readOrUndefined(paths.deviceTreeSerial);
  if (tree !== undefined) {
    const serial = tree.replace(/\0+$/, '').trim();
    if (serial !== '') return checked(serial, paths.deviceTreeSerial);
  }
  const cpuinfo = await readOrUndefined(paths.cpuinfo);
  const line = cpuinfo?.split('\n').find((entry) => /^Serial\s*:/.test(entry));
  if (line !== undefined) return checked(line.slice(line.indexOf(':') + 1).trim(), `${paths.cpuinfo} (Serial line)`);
  throw new HardwareSerialError(
    `no hardware serial: ${paths.deviceTreeSerial} is ${tree === undefined ? 'absent' : 'empty'} and ` +
      `${paths.cpuinfo} ${cpuinfo === undefined ? 'is absent' : 'has no Serial line'}; ` +
      'not a Raspberry Pi? set provisioning.serialSource to { "file": path } in agent.json',
  );
}

function checked(serial: string, from: string): string {
  if (serial === '') throw new HardwareSerialError(`${from} holds no serial`);
  if (!SERIAL_PATTERN.test(serial)) {
    throw new HardwareSerialError(
      `${from} holds ${JSON.stringify(serial.slice(0, 80))}, not a serial (1–64 letters, digits, "_" or "-", starting with a letter or digit)`,
    );
  }
  // A Pi whose firmware did not fill the serial reports zeros: every such robot would claim the same entry.
  if (/^0+$/.test(serial)) throw new HardwareSerialError(`${from} holds an all-zero serial: the firmware did not set it`);
  return serial;
}

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new HardwareSerialError(`${path} cannot be read: ${(error as Error).message}`);
  }
}
