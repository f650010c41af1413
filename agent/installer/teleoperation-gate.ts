/**
 * Whether the robot is being driven right now, as the installer needs it: an install never starts while a session is
 * open, and starts when it ends. Fed by the teleoperation monitor's transitions (agent/main.ts passes `set` as its
 * `onTransition`); tests set it directly.
 *
 * INVARIANTS: listeners hear each change once, in order, and only real changes (set(true) twice tells once).
 */
export interface TeleoperationGate {
  isTeleoperated(): boolean;
  onChange(listener: (teleoperated: boolean) => void): () => void;
}

export class TeleoperationSignal implements TeleoperationGate {
  private active = false;
  private readonly listeners = new Set<(teleoperated: boolean) => void>();

  isTeleoperated(): boolean {
    return this.active;
  }

  set(active: boolean): void {
    if (active === this.active) return;
    this.active = active;
    for (const listener of [...this.listeners]) listener(active);
  }

  onChange(listener: (teleoperated: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
}

/** Resolves once `gate` says nobody is driving. */
export function notTeleoperated(gate: TeleoperationGate): Promise<void> {
  if (!gate.isTeleoperated()) return Promise.resolve();
  return new Promise((resolve) => {
    const off = gate.onChange((active) => {
      if (active) return;
      off();
      resolve();
    });
  });
}
