import { expect } from 'vitest';
import type { DomainEvent } from '../../schemas/index.js';
import { decide, type DecisionContext, type RobotCommand } from '../../functions/domain/robot-decider.js';
import { fold, initialRobotState, type RobotState } from '../../functions/domain/robot-state.js';

/**
 * Given/When/Then for the robot decider: given past events, when a command is decided, then these events (or this
 * rejection) follow.
 */
export function givenRobot(robotId: string, ...past: DomainEvent[]) {
  const state = fold(initialRobotState(robotId), past);
  const context: DecisionContext = { known: past.length > 0 };
  return {
    state,
    when(command: RobotCommand) {
      const run = () => decide(state, command, context);
      return {
        then(expected: DomainEvent[] | ((events: DomainEvent[]) => void)) {
          const events = run();
          if (typeof expected === 'function') expected(events);
          else expect(events).toEqual(expected);
          return fold(state, events);
        },
        thenRejectedWith(code: string) {
          expect(run).toThrow(expect.objectContaining({ code }));
        },
      };
    },
  };
}

export function stateAfter(robotId: string, events: DomainEvent[]): RobotState {
  return fold(initialRobotState(robotId), events);
}
