import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as zmq from 'zeromq';

/**
 * LeKiwi stand-ins for teleoperation tests and benches, on loopback with real ZeroMQ: the host as a child process
 * (so /proc scanning finds it by command line), an operator in this process (PUSH actions at 30 Hz, PULL
 * observations) or as a child process (to SIGKILL), a viewer that only pulls video, and a local XLeRobot teleop
 * program (a child whose argv names the real script).
 */

const SUPPORT = fileURLToPath(new URL('./', import.meta.url));
const NODE = process.execPath;

/** The program the host stand-in is recognised by (node runs it as its script; see agent/core/program-match.ts). */
export const HOST_STAND_IN_FRAGMENT = 'lekiwi-host-stand-in.mjs';

/**
 * The teleoperation settings that watch a host stand-in: its two ports, its command line, and VR ports on which
 * nothing listens (so VR signals stay silent). For `teleoperationConfig()` or an agent config's `teleoperation`.
 */
export async function watching(host: Pick<HostStandIn, 'commandPort' | 'observationPort'>) {
  return {
    commandPort: host.commandPort,
    observationPort: host.observationPort,
    vrLinkPort: await freeTcpPort(),
    vrPagePort: await freeTcpPort(),
    hostProcesses: [HOST_STAND_IN_FRAGMENT],
  };
}

export interface HostStandIn {
  readonly commandPort: number;
  readonly observationPort: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export async function startHostStandIn(options: { commandPort?: number; observationPort?: number } = {}): Promise<HostStandIn> {
  const child = spawn(
    NODE,
    [
      `${SUPPORT}lekiwi-host-stand-in.mjs`,
      '--command-port',
      String(options.commandPort ?? 0),
      '--observation-port',
      String(options.observationPort ?? 0),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const ready = await firstJsonLine<{ commandPort: number; observationPort: number }>(child, 'host stand-in');
  return {
    commandPort: ready.commandPort,
    observationPort: ready.observationPort,
    child,
    stop: () => stopChild(child),
  };
}

/** A LeKiwi action as the client sends it: 6 arm joint positions and 3 base velocities (≈ 330 bytes of JSON). */
export function lekiwiAction(step: number): string {
  const t = step / 30;
  return JSON.stringify({
    'arm_shoulder_pan.pos': 10 * Math.sin(t),
    'arm_shoulder_lift.pos': -35.123456789 + Math.cos(t),
    'arm_elbow_flex.pos': 42.987654321 + Math.sin(t / 2),
    'arm_wrist_flex.pos': 71.55555555 - Math.cos(t / 3),
    'arm_wrist_roll.pos': 1.0123456789 * Math.sin(t),
    'arm_gripper.pos': 12.345678901,
    'x.vel': 0.1 + 0.01 * Math.sin(t),
    'y.vel': 0,
    'theta.vel': 15 * Math.cos(t),
  });
}

export interface Operator {
  /** Starts sending actions at `rateHz`; resolves with performance.now() of the first action handed to ZeroMQ. */
  startDriving(rateHz?: number): Promise<number>;
  /** Stops sending (the sockets stay connected); resolves with performance.now() of the last action sent. */
  stopDriving(): number;
  /** Observations received so far. */
  readonly observations: number;
  close(): void;
}

/** A remote operator (LeKiwiClient) in this process: connects PUSH to the command port and PULL to observations. */
export function connectOperator(options: {
  commandPort: number;
  observationPort?: number;
  host?: string;
}): Operator {
  const host = options.host ?? '127.0.0.1';
  const push = new zmq.Push({ linger: 0 });
  push.connect(`tcp://${host}:${options.commandPort}`);
  const pull = options.observationPort === undefined ? undefined : new zmq.Pull({ conflate: true, linger: 0 });
  pull?.connect(`tcp://${host}:${options.observationPort}`);
  let observations = 0;
  if (pull) {
    void (async () => {
      for await (const _message of pull) observations += 1;
    })().catch(() => undefined);
  }
  let timer: NodeJS.Timeout | undefined;
  let step = 0;
  let lastSentAt = 0;
  let sending = false;
  const send = () => {
    if (sending) return; // a busy socket (peer not there yet): skip this period rather than queue up
    sending = true;
    step += 1;
    const message = lekiwiAction(step);
    const at = performance.now();
    return push.send(message).then(
      () => {
        lastSentAt = at;
        sending = false;
        return at;
      },
      () => {
        sending = false;
        return at;
      },
    );
  };
  return {
    async startDriving(rateHz = 30) {
      if (timer) throw new Error('already driving');
      const first = performance.now();
      timer = setInterval(() => void send(), 1000 / rateHz);
      await send();
      return first;
    },
    stopDriving() {
      if (timer) clearInterval(timer);
      timer = undefined;
      return lastSentAt;
    },
    get observations() {
      return observations;
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      push.close();
      pull?.close();
    },
  };
}

/** Someone watching the camera feed only: PULL on the observation port, no actions. */
export function connectViewer(options: { observationPort: number; host?: string }): { readonly frames: number; close(): void } {
  const pull = new zmq.Pull({ linger: 0 });
  pull.connect(`tcp://${options.host ?? '127.0.0.1'}:${options.observationPort}`);
  let frames = 0;
  void (async () => {
    for await (const _message of pull) frames += 1;
  })().catch(() => undefined);
  return {
    get frames() {
      return frames;
    },
    close: () => pull.close(),
  };
}

/** An operator in a child process, driving from the start; SIGKILL it to make it vanish. */
export async function spawnOperatorProcess(options: { commandPort: number }): Promise<{ child: ChildProcess; drivingAt: number; stop(): Promise<void> }> {
  const child = spawn(NODE, [`${SUPPORT}lekiwi-operator-stand-in.mjs`, '--command-port', String(options.commandPort)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await firstJsonLine(child, 'operator stand-in');
  return { child, drivingAt: performance.now(), stop: () => stopChild(child) };
}

/**
 * A local XLeRobot teleop program: `python3 <tmp>/<script>` (default the keyboard teleop), a real Python script of
 * that name that prints "up" and sleeps, as XLeRobot's scripts are started. `startedAt` is performance.now() just
 * before the spawn.
 */
export async function spawnLocalTeleop(script = '4_xlerobot_teleop_keyboard.py'): Promise<{ child: ChildProcess; startedAt: number; stop(): Promise<void> }> {
  const folder = mkdtempSync(join(tmpdir(), 'heartbeat-local-teleop-'));
  const path = join(folder, script);
  writeFileSync(path, 'import sys, time\nprint("up", flush=True)\nwhile True:\n    time.sleep(3600)\n');
  const startedAt = performance.now();
  const child = spawn('python3', ['-u', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.stdout!.once('data', () => resolve());
    });
  } catch (error) {
    rmSync(folder, { recursive: true, force: true });
    throw error;
  }
  return {
    child,
    startedAt,
    stop: async () => {
      await stopChild(child);
      rmSync(folder, { recursive: true, force: true });
    },
  };
}

/** A TCP port nobody listens on right now. */
export async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function firstJsonLine<T>(child: ChildProcess, name: string): Promise<T> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString('utf8')));
  return new Promise<T>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 10 s: ${stderr}`)), 10_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready: ${stderr}`));
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buffered.slice(0, newline)) as T);
      } catch (error) {
        reject(error as Error);
      }
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, 2_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
