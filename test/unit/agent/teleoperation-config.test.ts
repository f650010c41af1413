import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  DEFAULT_TELEOPERATION_CONFIG,
  teleoperationConfig,
  watchedPorts,
  watchedProcesses,
  type TeleoperationConfig,
} from '../../../agent/core/teleoperation-config.js';
import { createTeleoperationScorer } from '../../../agent/core/teleoperation-scorer.js';

function issuePaths(act: () => unknown): string[] {
  try {
    act();
  } catch (error) {
    expect(error).toBeInstanceOf(z.ZodError);
    return (error as z.ZodError).issues.map((issue) => issue.path.join('.'));
  }
  throw new Error('expected the config to be rejected');
}

describe('teleoperation config', () => {
  it('applies overrides on top of the defaults', () => {
    // Given a robot whose host listens elsewhere and an impatient operator of the fleet
    const overrides = { commandPort: 6555, observationPort: 6556, stopAfterMs: 1_000 };

    // When the config is built
    const config = teleoperationConfig(overrides);

    // Then the overrides win and everything else is the default
    expect(config).toEqual({ ...DEFAULT_TELEOPERATION_CONFIG, ...overrides });
    expect(watchedPorts(config)).toEqual([6555, 6556, 8442, 8443]);
    expect(createTeleoperationScorer(overrides).config).toEqual(config);
  });

  it('lists every process the adapter must look for', () => {
    // Given an extra local teleop program
    const config = teleoperationConfig({
      localTeleopProcesses: { ...DEFAULT_TELEOPERATION_CONFIG.localTeleopProcesses, gamepad: 'my_gamepad_teleop.py' },
    });

    // When the adapter asks what to look for
    const processes = watchedProcesses(config);

    // Then it is the host and every teleop program
    expect(processes).toEqual([
      'lerobot.robots.lekiwi.lekiwi_host',
      '4_xlerobot_teleop_keyboard.py',
      '5_xlerobot_teleop_xbox.py',
      '7_xlerobot_teleop_joycon.py',
      'my_gamepad_teleop.py',
    ]);
  });

  it.each<[string, Partial<TeleoperationConfig>]>([
    ['commandPort', { commandPort: 70_000 }],
    ['observationPort', { observationPort: 5555 }],
    ['startMinActions', { startMinActions: 0 }],
    ['stopAfterMs', { stopAfterMs: -1 }],
    ['localTeleopProcesses.Keyboard Teleop', { localTeleopProcesses: { 'Keyboard Teleop': 'kb.py' } }],
    // A command line never matches a program (agent/core/program-match.ts): refused rather than silently never seen.
    ['hostProcesses.0', { hostProcesses: ['python -m lerobot.robots.lekiwi.lekiwi_host'] }],
    ['localTeleopProcesses.keyboard', { localTeleopProcesses: { keyboard: 'python3 4_xlerobot_teleop_keyboard.py' } }],
  ])('rejects a bad %s, naming it', (path, overrides) => {
    // Given a config with one bad field
    // When it is built, directly or through the scorer
    const paths = issuePaths(() => teleoperationConfig(overrides));
    const viaScorer = issuePaths(() => createTeleoperationScorer(overrides));

    // Then the error points at that field
    expect(paths).toEqual([path]);
    expect(viaScorer).toEqual([path]);
  });

  it('rejects fields it does not know', () => {
    // Given a typo in a config file
    const overrides = { stopAfterMS: 900 } as Partial<TeleoperationConfig>;

    // When the config is built
    const act = () => teleoperationConfig(overrides);

    // Then it is refused rather than silently ignored
    expect(act).toThrow(/stopAfterMS/);
  });
});
