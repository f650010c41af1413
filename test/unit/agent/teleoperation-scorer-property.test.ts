import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  initialTeleoperationState,
  nextTeleoperationState,
  teleoperationDecision,
  type TcpPeer,
  type TeleoperationObservation,
  type TeleoperationTransition,
} from '../../../agent/core/teleoperation-scorer.js';
import {
  actions,
  frames,
  greeting,
  headsetLinkPeer,
  headsetPagePeer,
  HOST_PROCESS,
  KEYBOARD_TELEOP,
  operatorCommandPeer,
  operatorObservationPeer,
  run,
  viewerPeer,
  type During,
  type World,
} from './teleoperation-world.js';

const peerPool: TcpPeer[] = [
  operatorCommandPeer,
  { ...operatorCommandPeer, remoteAddress: '192.168.1.21', remotePort: 50_000 },
  operatorObservationPeer,
  viewerPeer,
  headsetLinkPeer,
  headsetPagePeer,
];
const processPool = [HOST_PROCESS, KEYBOARD_TELEOP, '5_xlerobot_teleop_xbox.py', 'sshd'];

/** Any reading at all, a few tens of milliseconds after the previous one. */
const step = fc.record({
  dt: fc.integer({ min: 0, max: 400 }),
  commandBytesIn: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2_000 })),
  commandMessagesIn: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
  observationBytesOut: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 100_000 })),
  peers: fc.subarray(peerPool),
  processes: fc.subarray(processPool),
});

describe('teleoperation scorer (properties)', () => {
  it('alternates started/stopped, and a stop lasts exactly from its start', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 250 }), (steps) => {
        // Given any sequence of readings
        let state = initialTeleoperationState();
        let at = 0;
        const transitions: TeleoperationTransition[] = [];

        // When each is fed to the reducer
        for (const { dt, commandMessagesIn, ...counters } of steps) {
          at += dt;
          const observation: TeleoperationObservation = {
            at,
            ...counters,
            ...(commandMessagesIn === undefined ? {} : { commandMessagesIn }),
          };
          const next = nextTeleoperationState(state, observation);
          // Then each reading yields at most one transition, stamped with its own time
          expect(next.transitions.length).toBeLessThanOrEqual(1);
          for (const transition of next.transitions) expect(transition.at).toBe(at);
          transitions.push(...next.transitions);
          state = next.state;
        }

        // Then starts and stops alternate, a start rests on direct evidence, and durations are exact
        let openStart: Extract<TeleoperationTransition, { type: 'started' }> | null = null;
        for (const transition of transitions) {
          if (transition.type === 'started') {
            expect(openStart).toBeNull();
            expect(transition.score).toBeGreaterThanOrEqual(0.6);
            expect(transition.score).toBeLessThanOrEqual(1);
            const direct = transition.signals.filter(
              (signal) => signal === 'actions' || signal === 'vr-link' || signal.startsWith('local-teleop:'),
            );
            expect(direct).not.toEqual([]);
            openStart = transition;
          } else {
            expect(openStart).not.toBeNull();
            expect(transition.durationMs).toBe(transition.at - openStart!.at);
            openStart = null;
          }
        }
        expect(teleoperationDecision(state)).toMatchObject({ active: openStart !== null, since: openStart?.at ?? null });
      }),
      { numRuns: 500 },
    );
  });

  it('detects driving within 100 ms of the first action and its end within a second, at any 20–50 ms tick', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 20, max: 50 }),
        fc.double({ min: 2_000, max: 3_000, noNaN: true }),
        fc.double({ min: 1, max: 1_500, noNaN: true }),
        fc.integer({ min: 150, max: 4_000 }),
        fc.integer({ min: 45, max: 350 }),
        (tickMs, firstAction, connectedBefore, drivingMs, actionBytes) => {
          // Given an operator who connects, then drives at 30 Hz for a while and stops, video flowing throughout
          const connectAt = firstAction - connectedBefore;
          const sent = actions(firstAction, firstAction + drivingMs, actionBytes);
          const lastAction = sent.at(-1)!.at;
          const world: World = {
            processes: [{ from: 0, value: HOST_PROCESS }],
            peers: [
              { from: connectAt, value: operatorCommandPeer },
              { from: connectAt, value: operatorObservationPeer },
            ],
            commandTraffic: [greeting(connectAt + 0.5), ...sent],
            observationTraffic: frames(connectAt + 1, 9_000),
          };

          // When the agent reads it every tick
          const { transitions } = run(world, { tickMs, until: 9_000 });

          // Then exactly one session, started within 100 ms, stopped within a second of the last action
          expect(transitions.map((transition) => transition.type)).toEqual(['started', 'stopped']);
          const [started, stopped] = transitions as [TeleoperationTransition, TeleoperationTransition];
          expect(started.at).toBeGreaterThanOrEqual(firstAction);
          expect(started.at - firstAction).toBeLessThanOrEqual(100);
          expect(stopped).toMatchObject({ reason: 'idle' });
          expect(stopped.at - lastAction).toBeGreaterThan(750);
          expect(stopped.at - lastAction).toBeLessThanOrEqual(1_000);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('never starts on context alone: connections come and go, greetings and video flow, nobody drives', () => {
    const connection = fc.record({
      from: fc.integer({ min: 0, max: 8_000 }),
      // At least a few ticks: a connection that lives and dies between two readings is invisible to the adapter.
      lasting: fc.integer({ min: 100, max: 5_000 }),
      peer: fc.constantFrom(operatorCommandPeer, operatorObservationPeer, viewerPeer, headsetPagePeer),
      remotePort: fc.integer({ min: 1_024, max: 65_535 }),
    });
    fc.assert(
      fc.property(fc.array(connection, { maxLength: 12 }), fc.integer({ min: 20, max: 50 }), (connections, tickMs) => {
        // Given connections on every port but the VR link, each command connection greeting the host once
        const peers: During<TcpPeer>[] = connections.map(({ from, lasting, peer, remotePort }) => ({
          from,
          to: from + lasting,
          value: { ...peer, remotePort },
        }));
        const world: World = {
          processes: [{ from: 0, value: HOST_PROCESS }],
          peers,
          commandTraffic: peers
            .filter((during) => during.value.localPort === 5555)
            .map((during) => greeting(during.from + 0.5)),
          observationTraffic: frames(0, 10_000),
        };

        // When the agent watches
        const { transitions } = run(world, { tickMs, until: 10_000 });

        // Then nothing starts
        expect(transitions).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });
});
