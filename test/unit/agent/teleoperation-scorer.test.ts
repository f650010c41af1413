import { describe, expect, it } from 'vitest';
import {
  createTeleoperationScorer,
  InvalidTeleoperationObservation,
  type TeleoperationObservation,
} from '../../../agent/core/teleoperation-scorer.js';
import {
  actions,
  frames,
  greeting,
  headsetLinkPeer,
  headsetPagePeer,
  HEADSET,
  HOST_PROCESS,
  KEYBOARD_TELEOP,
  OPERATOR,
  operatorCommandPeer,
  operatorObservationPeer,
  run,
  viewerPeer,
  type World,
} from './teleoperation-world.js';

/** The LeKiwi host runs from t = 0; the operator's client connects both its sockets at t = 1000. */
const hostUp = { from: 0, value: HOST_PROCESS };
const operatorConnected = [
  { from: 1000, value: operatorCommandPeer },
  { from: 1000, value: operatorObservationPeer },
];

/** The operator drives at 30 Hz from 2010 to 5000 (last action at 4976.7) and keeps watching until 10 s. */
function drivingWorld(overrides: Partial<World> = {}): World {
  return {
    processes: [hostUp],
    peers: operatorConnected,
    commandTraffic: [greeting(1000.5), ...actions(2010, 5000)],
    observationTraffic: frames(1001, 10_000),
    ...overrides,
  };
}

const every25ms = { tickMs: 25, until: 10_000 };

describe('teleoperation scorer: LeKiwi', () => {
  it('never starts while the host runs with nobody connected', () => {
    // Given the host alone for ten seconds
    const world: World = { processes: [hostUp] };

    // When the agent watches it
    const { transitions, scorer } = run(world, every25ms);

    // Then nothing happened, and the host is only context
    expect(transitions).toEqual([]);
    expect(scorer.state()).toEqual({
      active: false,
      since: null,
      operatorAddress: null,
      signals: ['host-process'],
      score: 0.1,
    });
  });

  it('does not start for an operator who is connected and watching but sends nothing', () => {
    // Given an operator whose client connected (greeting on the command port, video flowing) but never drives
    const world = drivingWorld({ commandTraffic: [greeting(1000.5)] });

    // When the agent watches for ten seconds
    const { transitions, scorer } = run(world, every25ms);

    // Then there is no session, although every contextual signal is on
    expect(transitions).toEqual([]);
    expect(scorer.state()).toMatchObject({
      active: false,
      signals: ['command-peer', 'observation-stream', 'host-process'],
      score: 0.4,
    });
  });

  it('does not mistake a greeting split across two ticks for actions', () => {
    // Given a slow link: the ZMTP signature lands in one tick, the rest of the greeting and READY in the next
    const world = drivingWorld({
      commandTraffic: [
        { at: 1024, bytes: 10, kind: 'greeting' },
        { at: 1026, bytes: 82, kind: 'greeting' },
      ],
    });

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then nothing starts
    expect(transitions).toEqual([]);
  });

  it('does not start for a viewer who only pulls the observation stream', () => {
    // Given a viewer connected to the observation port, receiving 30 frames a second
    const world: World = {
      processes: [hostUp],
      peers: [{ from: 1000, value: viewerPeer }],
      observationTraffic: frames(1001, 10_000),
    };

    // When the agent watches
    const { transitions, scorer } = run(world, every25ms);

    // Then watching is not driving
    expect(transitions).toEqual([]);
    expect(scorer.state()).toMatchObject({ active: false, signals: ['observation-stream', 'host-process'] });
  });

  it('starts within 100 ms of the first action, with the operator address and what fired', () => {
    // Given an operator who starts driving at 2010 (actions at 2010, 2043.3, …), read every 25 ms
    const world = drivingWorld();

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then the tick at 2025 saw one action, the tick at 2050 the second: started at 2050, 40 ms after the first
    const started = transitions[0];
    expect(started).toEqual({
      type: 'started',
      at: 2050,
      operatorAddress: OPERATOR,
      signals: ['actions', 'command-peer', 'observation-stream', 'host-process'],
      score: 1,
    });
    expect(started!.at - 2010).toBeLessThanOrEqual(100);
  });

  it('starts within 100 ms at a 50 ms tick too, when the second action just misses the first tick', () => {
    // Given the worst phase for a 50 ms tick: the first action lands at 2017, its successor at 2050.3 (next tick)
    const world = drivingWorld({ commandTraffic: [greeting(1000.5), ...actions(2017, 5000)] });

    // When the agent reads every 50 ms
    const { transitions } = run(world, { tickMs: 50, until: 10_000 });

    // Then it starts at the tick of 2100, 83 ms after the first action
    expect(transitions[0]).toMatchObject({ type: 'started', at: 2100 });
    expect(transitions[0]!.at - 2017).toBeLessThanOrEqual(100);
  });

  it('stops within a second of the operator ceasing to send, and keeps quiet while they only watch', () => {
    // Given the operator stops sending at 4976.7 but stays connected and keeps receiving video until 10 s
    const world = drivingWorld();

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then the last action was seen at the 5000 tick; the first tick more than 750 ms later is 5775
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 2050 }),
      { type: 'stopped', at: 5775, reason: 'idle', durationMs: 3725 },
    ]);
    expect(5775 - 4976.7).toBeLessThan(1000);
  });

  it('stops as idle when the operator vanishes without closing its socket', () => {
    // Given the operator's laptop drops off the network at 5000: its connections stay ESTABLISHED on the robot, no
    // more actions arrive, and the video stalls once the TCP send buffer is full
    const world = drivingWorld({ observationTraffic: frames(1001, 5100) });

    // When the agent watches
    const { transitions, scorer } = run(world, every25ms);

    // Then the session ends by silence, although the peer is still listed
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 2050 }),
      { type: 'stopped', at: 5775, reason: 'idle', durationMs: 3725 },
    ]);
    expect(scorer.state().signals).toContain('command-peer');
  });

  it('stops with peer-gone when the operator closes its connection', () => {
    // Given the operator disconnects at 5000, right after its last action
    const world = drivingWorld({
      peers: operatorConnected.map((during) => ({ ...during, to: 5000 })),
      observationTraffic: frames(1001, 5000),
    });

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then the stop window still applies (a reconnect would not flap), and the reason says the peer left
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 2050 }),
      { type: 'stopped', at: 5775, reason: 'peer-gone', durationMs: 3725 },
    ]);
  });

  it('stops at once when the host process exits', () => {
    // Given the host dies at 3000, taking its sockets with it
    const world = drivingWorld({
      processes: [{ ...hostUp, to: 3000 }],
      peers: operatorConnected.map((during) => ({ ...during, to: 3000 })),
      commandTraffic: [greeting(1000.5), ...actions(2010, 3000)],
      observationTraffic: frames(1001, 3000),
    });

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then the session ends on the first tick without the host, not 750 ms later
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 2050 }),
      { type: 'stopped', at: 3000, reason: 'host-stopped', durationMs: 950 },
    ]);
  });

  it('rides out a pause shorter than the stop window without flapping', () => {
    // Given the operator pauses for 600 ms (last action seen at the 3000 tick, next at 3600) and drives on
    const world = drivingWorld({ commandTraffic: [greeting(1000.5), ...actions(2010, 3000), ...actions(3600, 5000)] });

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then it is one session, ending 775 ms after the last action was seen (at the 4975 tick)
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 2050 }),
      { type: 'stopped', at: 5750, reason: 'idle', durationMs: 3700 },
    ]);
  });

  it('splits a pause longer than the stop window into two sessions', () => {
    // Given the operator pauses for a full second (3000 → 4000)
    const world = drivingWorld({ commandTraffic: [greeting(1000.5), ...actions(2010, 3000), ...actions(4000, 5000)] });

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then the first session stops at 3775; the second starts on its second action (seen at the 4050 tick)
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 2050 }),
      { type: 'stopped', at: 3775, reason: 'idle', durationMs: 1725 },
      expect.objectContaining({ type: 'started', at: 4050, operatorAddress: OPERATOR }),
      { type: 'stopped', at: 5750, reason: 'idle', durationMs: 1700 },
    ]);
  });

  it('never starts on a single stray action', () => {
    // Given one action at 2010 and nothing after it
    const world = drivingWorld({ commandTraffic: [greeting(1000.5), { at: 2010, bytes: 310, kind: 'action' }] });

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then no session
    expect(transitions).toEqual([]);
  });

  it('uses exact message counts when the adapter has them', () => {
    // Given an adapter that counts messages: a lone message, then two arriving within one tick 5 s later
    const world = drivingWorld({
      commandTraffic: [
        greeting(1000.5),
        { at: 2010, bytes: 40, kind: 'action' },
        { at: 7010, bytes: 40, kind: 'action' },
        { at: 7020, bytes: 40, kind: 'action' },
      ],
    });

    // When the agent watches
    const { transitions } = run(world, { ...every25ms, countsMessages: true });

    // Then the lone message started nothing; the pair did, on the tick that saw both
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 7025 }),
      { type: 'stopped', at: 7800, reason: 'idle', durationMs: 775 },
    ]);
  });

  it('names the newest connection as the operator when a vanished one is still listed', () => {
    // Given a stale connection from an operator who vanished, and a new operator who connects at 1500 and drives
    const newcomer = { localPort: 5555, remoteAddress: '192.168.1.21', remotePort: 50_000 };
    const world = drivingWorld({
      peers: [...operatorConnected, { from: 1500, value: newcomer }],
      commandTraffic: [greeting(1000.5), greeting(1500.5), ...actions(2010, 5000)],
    });

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then the session is attributed to the newcomer
    expect(transitions[0]).toMatchObject({ type: 'started', at: 2050, operatorAddress: '192.168.1.21' });
  });

  it('watches the ports it is configured with', () => {
    // Given a host whose command port was moved to 6000, and traffic on the default port that means nothing now
    const moved = { ...operatorCommandPeer, localPort: 6000 };
    const world = drivingWorld({ peers: [{ from: 1000, value: moved }, { from: 1000, value: operatorObservationPeer }] });

    // When the agent watches with the port configured, and with the defaults
    const configured = run(world, every25ms, { commandPort: 6000 });
    const unconfigured = run(world, every25ms);

    // Then only the configured scorer knows who drives: the default one sees actions but no peer to name
    expect(configured.transitions[0]).toMatchObject({ type: 'started', at: 2050, operatorAddress: OPERATOR });
    expect(unconfigured.transitions[0]).toEqual({
      type: 'started',
      at: 2050,
      operatorAddress: null,
      signals: ['actions', 'observation-stream', 'host-process'],
      score: 0.8,
    });
  });
});

describe('teleoperation scorer: XLeRobot', () => {
  it('starts for a local keyboard teleop program and stops when it exits', () => {
    // Given the keyboard teleop script running from 1000 to 4000 (Bluetooth keyboard: no network traffic)
    const world: World = { processes: [{ from: 1000, to: 4000, value: KEYBOARD_TELEOP }] };

    // When the agent watches
    const { transitions, scorer } = run(world, every25ms);

    // Then the session is local and ends with the program
    expect(transitions).toEqual([
      { type: 'started', at: 1000, operatorAddress: 'local', signals: ['local-teleop:keyboard'], score: 0.6 },
      { type: 'stopped', at: 4000, reason: 'process-exited', durationMs: 3000 },
    ]);
    expect(scorer.state().active).toBe(false);
  });

  it('starts for a VR headset link and stops after it has been gone for the stop window', () => {
    // Given the VR page opened at 500 and the controller WebSocket linked from 1000 to 3000
    const world: World = {
      peers: [
        { from: 500, value: headsetPagePeer },
        { from: 1000, to: 3000, value: headsetLinkPeer },
      ],
    };

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then the link was last seen at 2975; the first tick more than 750 ms later is 3750
    expect(transitions).toEqual([
      { type: 'started', at: 1000, operatorAddress: HEADSET, signals: ['vr-link', 'vr-page'], score: 0.7 },
      { type: 'stopped', at: 3750, reason: 'peer-gone', durationMs: 2750 },
    ]);
  });

  it('keeps one session across a brief VR link reconnect', () => {
    // Given the headset's WebSocket drops for 400 ms and comes back on a new source port
    const reconnected = { ...headsetLinkPeer, remotePort: 53_002 };
    const world: World = {
      peers: [
        { from: 1000, to: 2000, value: headsetLinkPeer },
        { from: 2400, to: 3000, value: reconnected },
      ],
    };

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then one session, ending 775 ms after the 2975 tick
    expect(transitions).toEqual([
      expect.objectContaining({ type: 'started', at: 1000 }),
      { type: 'stopped', at: 3750, reason: 'peer-gone', durationMs: 2750 },
    ]);
  });

  it('does not start for someone who only opened the VR page', () => {
    // Given a browser on the HTTPS page, never linking the controllers
    const world: World = { peers: [{ from: 500, value: headsetPagePeer }] };

    // When the agent watches
    const { transitions } = run(world, every25ms);

    // Then no session
    expect(transitions).toEqual([]);
  });
});

describe('teleoperation scorer: bad readings', () => {
  const reading = (at: number): TeleoperationObservation => ({
    at,
    commandBytesIn: 0,
    observationBytesOut: 0,
    peers: [],
    processes: [KEYBOARD_TELEOP],
  });

  it('rejects a reading whose time went backwards, naming the field, and keeps its state', () => {
    // Given a scorer in a session started at 1000
    const scorer = createTeleoperationScorer();
    scorer.observe(reading(1000));

    // When a reading from the past arrives
    const act = () => scorer.observe(reading(900));

    // Then it is refused by name and the session is untouched
    expect(act).toThrow(InvalidTeleoperationObservation);
    expect(act).toThrow(/^teleoperation observation: at went backwards/);
    expect(scorer.state()).toMatchObject({ active: true, since: 1000 });
  });

  it.each([
    ['commandBytesIn', { commandBytesIn: -1 }],
    ['observationBytesOut', { observationBytesOut: Number.NaN }],
    ['commandMessagesIn', { commandMessagesIn: 1.5 }],
    ['peers[0].remoteAddress', { peers: [{ localPort: 5555, remoteAddress: '', remotePort: 1 }] }],
    ['peers[0].localPort', { peers: [{ localPort: 0, remoteAddress: OPERATOR, remotePort: 1 }] }],
    ['processes', { processes: [42] as unknown as string[] }],
    ['at', { at: Number.POSITIVE_INFINITY }],
  ])('rejects a bad %s', (field, patch) => {
    // Given a fresh scorer
    const scorer = createTeleoperationScorer();

    // When a malformed reading arrives
    let error: unknown;
    try {
      scorer.observe({ ...reading(0), ...patch });
    } catch (caught) {
      error = caught;
    }

    // Then the error names the field
    expect(error).toBeInstanceOf(InvalidTeleoperationObservation);
    expect((error as InvalidTeleoperationObservation).field).toBe(field);
  });
});
