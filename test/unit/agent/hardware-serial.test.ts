import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HardwareSerialError, type RaspberryPiPaths, readHardwareSerial } from '../../../agent/adapters/hardware-serial.js';

/** /proc/cpuinfo of a Raspberry Pi 4 (64-bit Raspberry Pi OS), abridged. */
const PI4_CPUINFO = `processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

Revision\t: c03114
Serial\t\t: 10000000abcdef01
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
`;

/** /proc/cpuinfo of a laptop: no Serial line. */
const X86_CPUINFO = `processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7
`;

let dir: string;
let paths: RaspberryPiPaths;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hardware-serial-'));
  paths = { deviceTreeSerial: join(dir, 'serial-number'), cpuinfo: join(dir, 'cpuinfo') };
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('hardware serial of a Raspberry Pi', () => {
  it('reads the device tree serial, without its NUL terminator', async () => {
    await writeFile(paths.deviceTreeSerial, '10000000abcdef01\0');
    await writeFile(paths.cpuinfo, PI4_CPUINFO.replace('10000000abcdef01', 'ffffffffffffffff'));
    expect(await readHardwareSerial('raspberry-pi', paths)).toBe('10000000abcdef01');
  });

  it("falls back to /proc/cpuinfo's Serial line when the device tree has none", async () => {
    await writeFile(paths.cpuinfo, PI4_CPUINFO);
    expect(await readHardwareSerial('raspberry-pi', paths)).toBe('10000000abcdef01');
    await writeFile(paths.deviceTreeSerial, '\0');
    expect(await readHardwareSerial('raspberry-pi', paths)).toBe('10000000abcdef01');
  });

  it('names both places when neither has a serial (not a Pi)', async () => {
    await writeFile(paths.cpuinfo, X86_CPUINFO);
    await expect(readHardwareSerial('raspberry-pi', paths)).rejects.toThrow(HardwareSerialError);
    await expect(readHardwareSerial('raspberry-pi', paths)).rejects.toThrow(/serial-number is absent and .*cpuinfo has no Serial line.*serialSource/);
  });

  it('refuses an all-zero serial (firmware did not set it)', async () => {
    await writeFile(paths.deviceTreeSerial, '0000000000000000\0');
    await expect(readHardwareSerial('raspberry-pi', paths)).rejects.toThrow(/all-zero/);
  });

  it('refuses a serial that cannot name a thing, quoting it', async () => {
    await writeFile(paths.deviceTreeSerial, 'abc/def\0');
    await expect(readHardwareSerial('raspberry-pi', paths)).rejects.toThrow(/"abc\/def", not a serial/);
  });
});

describe('hardware serial from a file', () => {
  it('reads the first line, trimmed', async () => {
    const file = join(dir, 'serial.txt');
    await writeFile(file, '  LK0001 \nsecond line\n');
    expect(await readHardwareSerial({ file })).toBe('LK0001');
  });

  it('names a missing file and an empty one', async () => {
    const file = join(dir, 'serial.txt');
    await expect(readHardwareSerial({ file })).rejects.toThrow(/serial file .*serial\.txt cannot be read/);
    await writeFile(file, '\n');
    await expect(readHardwareSerial({ file })).rejects.toThrow(/serial\.txt holds no serial/);
  });
});
