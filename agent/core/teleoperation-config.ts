import { z } from 'zod';

/**
 * What the teleoperation scorer watches and how patient it is, in one place. Ports and process names come from the
 * LeRobot/XLeRobot software the robots run; the windows come from the LeKiwi host's own timing (about 30 actions per
 * second, base stopped after 500 ms without one).
 */

const port = z.number().int().min(1).max(65_535);
const durationMs = z.number().int().nonnegative();
const windowMs = z.number().int().positive();

/**
 * A watched program (agent/core/program-match.ts): a script's base name (`4_xlerobot_teleop_keyboard.py`) or path
 * (`examples/lekiwi/teleoperate.py`), or a module run with `python -m` (`lerobot.robots.lekiwi.lekiwi_host`). Never a
 * command line: arguments play no part in the match.
 */
const programName = z
  .string()
  .min(1)
  .regex(/^[^\s\0]+$/, 'must be one program name (a script base name or path, or a module name), without spaces or arguments');

/** Labels end up in signal names (`local-teleop:<label>`), which the event schema caps at 32 characters. */
const localTeleopLabel = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,18}$/, 'lowercase letters, digits and - only, at most 19');

export const TeleoperationConfig = z
  .object({
    /** The LeKiwi host's ZMQ PULL for actions: inbound bytes here are someone driving. */
    commandPort: port,
    /** The host's ZMQ PUSH for observations (state + JPEG frames): outbound bytes here are someone watching. */
    observationPort: port,
    /** XLeRobot's VR bridge WebSocket: a peer here is a headset streaming controller poses. */
    vrLinkPort: port,
    /** XLeRobot's VR bridge HTTPS page: a peer here has only opened the page. */
    vrPagePort: port,
    /** The host's program (matched against what each process runs, by the adapter; see `programName`). */
    hostProcesses: z.array(programName).readonly(),
    /** Local teleop programs by label; such a program drives the robot the whole time it runs. */
    localTeleopProcesses: z.record(localTeleopLabel, programName).readonly(),
    /** Actions must arrive at a driving rate: `startMinActions` of them within `startWindowMs`. */
    startWindowMs: windowMs,
    startMinActions: z.number().int().min(1),
    /** A session ends when its freshest evidence (an action, a VR link peer) is older than this. */
    stopAfterMs: windowMs,
    /** When the adapter only sees bytes: how many inbound bytes count as one more action. */
    bytesPerAction: z.number().int().min(1),
    /** Inbound bytes a new command-port connection spends on its ZMTP greeting before any action. */
    zmtpHandshakeBytes: z.number().int().nonnegative(),
    /** How long after a connection arrives its unspent handshake allowance is still kept. */
    handshakeWindowMs: durationMs,
    /** Outbound observation traffic above this rate, averaged over the window, means a viewer pulls the stream. */
    observationStreamBytesPerSecond: z.number().nonnegative(),
    observationWindowMs: windowMs,
  })
  .strict()
  .superRefine((config, context) => {
    // One port read as two signals would count a viewer's traffic as driving, or the other way round.
    const ports = ['commandPort', 'observationPort', 'vrLinkPort', 'vrPagePort'] as const;
    ports.forEach((name, index) => {
      const clash = ports.slice(0, index).find((other) => config[other] === config[name]);
      if (clash) {
        context.addIssue({ code: 'custom', path: [name], message: `must differ from ${clash} (${config[name]})` });
      }
    });
  });
export type TeleoperationConfig = z.infer<typeof TeleoperationConfig>;

export const DEFAULT_TELEOPERATION_CONFIG: TeleoperationConfig = Object.freeze({
  commandPort: 5555,
  observationPort: 5556,
  vrLinkPort: 8442,
  vrPagePort: 8443,
  // LeRobot starts the host as `python -m lerobot.robots.lekiwi.lekiwi_host --robot.id=…` (its file run as a script
  // matches too). Its client (examples/lekiwi/teleoperate.py) runs on the operator's computer, not here.
  hostProcesses: Object.freeze(['lerobot.robots.lekiwi.lekiwi_host']),
  // The example programs XLeRobot ships for on-robot teleop (Bluetooth or USB input: no network traffic to see), run
  // as `python <path>/4_xlerobot_teleop_keyboard.py`.
  localTeleopProcesses: Object.freeze({
    keyboard: '4_xlerobot_teleop_keyboard.py',
    xbox: '5_xlerobot_teleop_xbox.py',
    joycon: '7_xlerobot_teleop_joycon.py',
  }),
  // Two actions are 33 ms apart at 30 Hz, so a driver shows two within 100 ms; a lone stray message never does.
  startWindowMs: 100,
  startMinActions: 2,
  // The host's 500 ms watchdog plus 250 ms for Wi-Fi jitter and tick granularity: a pause the host rides out is not
  // the end of a session, and a real stop is reported well within a second.
  stopAfterMs: 750,
  // One LeKiwi action (6 arm positions + 3 base velocities as JSON) is about 300 bytes: 256 counts two of them in
  // one tick as two, and never counts a single one twice.
  bytesPerAction: 256,
  // ZMTP 3 greeting (64 bytes) + READY with Socket-Type PUSH (28 bytes) = 92, with room to spare.
  zmtpHandshakeBytes: 128,
  handshakeWindowMs: 1_000,
  // The JSON state alone at 30 Hz is over 10 KB/s and frames are far more; an idle PUSH sends nothing.
  observationStreamBytesPerSecond: 4_096,
  // Several frames even at a camera's slower rates, so the signal does not flicker between frames.
  observationWindowMs: 500,
});

/** The defaults with `overrides` applied; a bad value throws a zod error whose path names the field. */
export function teleoperationConfig(overrides: Partial<TeleoperationConfig> = {}): TeleoperationConfig {
  return TeleoperationConfig.parse({ ...DEFAULT_TELEOPERATION_CONFIG, ...overrides });
}

/** The local ports whose established peers and traffic the adapter must report. */
export function watchedPorts(config: TeleoperationConfig): number[] {
  return [config.commandPort, config.observationPort, config.vrLinkPort, config.vrPagePort];
}

/** The programs the adapter looks for in /proc; it reports the ones it finds running. */
export function watchedProcesses(config: TeleoperationConfig): string[] {
  return [...config.hostProcesses, ...Object.values(config.localTeleopProcesses)];
}
