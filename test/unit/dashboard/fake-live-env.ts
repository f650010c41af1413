import type { LiveEnvironment, LiveSocket, SocketHandlers } from '../../../dashboard/src/live/environment.js';

/**
 * A hand-driven environment for the live feed's drivers: time moves only with `advance`, frames run only with
 * `frame()`, sockets are opened and driven by the test.
 */
export class FakeSocket implements LiveSocket {
  readonly sent: string[] = [];
  closed = false;
  constructor(
    readonly url: string,
    readonly handlers: SocketHandlers,
  ) {}
  send(text: string): void {
    this.sent.push(text);
  }
  close(): void {
    this.closed = true;
  }
  /** The server side: */
  open(): void {
    this.handlers.onOpen();
  }
  receive(message: unknown): void {
    this.handlers.onMessage(typeof message === 'string' ? message : JSON.stringify(message));
  }
  drop(): void {
    this.closed = true;
    this.handlers.onClose();
  }
}

interface Timer {
  readonly at: number;
  readonly order: number;
  readonly callback: () => void;
  cancelled: boolean;
}

export class FakeLiveEnvironment implements LiveEnvironment {
  time = 0;
  randomValue = 0.5;
  readonly sockets: FakeSocket[] = [];
  #timers: Timer[] = [];
  #frames: Array<{ callback: () => void; cancelled: boolean }> = [];
  #order = 0;

  openSocket = (url: string, handlers: SocketHandlers): FakeSocket => {
    const socket = new FakeSocket(url, handlers);
    this.sockets.push(socket);
    return socket;
  };

  requestFrame = (callback: () => void): (() => void) => {
    const frame = { callback, cancelled: false };
    this.#frames.push(frame);
    return () => {
      frame.cancelled = true;
    };
  };

  setTimer = (callback: () => void, ms: number): (() => void) => {
    const timer: Timer = { at: this.time + Math.max(0, ms), order: this.#order++, callback, cancelled: false };
    this.#timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  };

  now = (): number => this.time;
  random = (): number => this.randomValue;

  get pendingFrames(): number {
    return this.#frames.filter((frame) => !frame.cancelled).length;
  }

  /** Runs the animation frame callbacks requested so far. */
  frame(): void {
    const frames = this.#frames;
    this.#frames = [];
    for (const frame of frames) if (!frame.cancelled) frame.callback();
  }

  /** Moves time on by `ms`, running each timer due, in order (timers set meanwhile run too when due). */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = this.#timers
        .filter((timer) => !timer.cancelled && timer.at <= end)
        .sort((a, b) => a.at - b.at || a.order - b.order)[0];
      if (!due) break;
      due.cancelled = true;
      this.time = due.at;
      due.callback();
    }
    this.time = end;
    this.#timers = this.#timers.filter((timer) => !timer.cancelled);
  }

  get lastSocket(): FakeSocket {
    const socket = this.sockets[this.sockets.length - 1];
    if (!socket) throw new Error('no socket was opened');
    return socket;
  }
}

/** Lets pending promise callbacks run (the drivers await the API and the token). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
  await new Promise<void>((resolve) => setImmediate(resolve));
}
