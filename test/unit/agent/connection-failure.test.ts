import { describe, expect, it } from 'vitest';
import {
  afterFirstConnectionFailure,
  diagnoseConnectionFailure,
  EXIT_CONFIG,
  EXIT_UNAVAILABLE,
  exitCodeFor,
} from '../../../agent/core/connection-failure.js';

const TARGET = { endpoint: 'abc123-ats.iot.eu-west-1.amazonaws.com', port: 8883 };

describe('why a connection failed', () => {
  // The texts are aws-crt's own, as the link sees them (seen against Mosquitto with each mistake).
  it.each([
    ['aws-c-io: AWS_IO_TLS_CTX_ERROR, Failed to create tls context', 'credentials', /privateKeyFile is the key of certificateFile/, EXIT_CONFIG],
    ['Failed to connect: aws-c-io: AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE, TLS (SSL) negotiation failed', 'tls', /caFile .*clock/, EXIT_CONFIG],
    ['Failed to connect: aws-c-io: AWS_IO_TLS_ERROR_READ_FAILURE, Failure during TLS read.', 'rejected', /registered and ACTIVE.*iot:Connect/, EXIT_CONFIG],
    ['Server rejected connection.', 'rejected', /refused the robot/, EXIT_CONFIG],
    ['Failed to connect: aws-c-io: AWS_IO_SOCKET_CONNECTION_REFUSED, socket connection refused.', 'unreachable', /endpoint \(abc123-ats.*\) and port \(8883\)/, EXIT_UNAVAILABLE],
    ['Failed to connect: aws-c-io: AWS_IO_DNS_INVALID_NAME, Host name was invalid for dns resolution.', 'unreachable', /DNS/, EXIT_UNAVAILABLE],
    ['Failed to connect: aws-c-io: AWS_IO_SOCKET_TIMEOUT, socket operation timed out.', 'unreachable', /network/, EXIT_UNAVAILABLE],
    ['something new', 'unknown', /endpoint.*caFile, certificateFile, privateKeyFile and the clock/, EXIT_UNAVAILABLE],
  ] as const)('%s → %s', (message, problem, check, exitCode) => {
    const diagnosis = diagnoseConnectionFailure(message, TARGET);
    expect(diagnosis.problem).toBe(problem);
    expect(diagnosis.check).toMatch(check);
    expect(exitCodeFor(diagnosis.problem)).toBe(exitCode);
  });
});

describe('after a failed first connection', () => {
  const base = { problem: 'unreachable', startedAt: 1_000, budgetMs: 60_000, delayMs: 8_000 } as const;

  it('waits the backoff delay while the budget lasts', () => {
    expect(afterFirstConnectionFailure({ ...base, now: 10_000 })).toEqual({ giveUp: false, waitMs: 8_000 });
  });

  it('never waits past the end of the budget, so one last attempt is made at the deadline', () => {
    expect(afterFirstConnectionFailure({ ...base, now: 58_000 })).toEqual({ giveUp: false, waitMs: 3_000 });
  });

  it('gives up at the first failure once the budget has passed', () => {
    expect(afterFirstConnectionFailure({ ...base, now: 61_000 })).toEqual({ giveUp: true });
    expect(afterFirstConnectionFailure({ ...base, now: 90_000 })).toEqual({ giveUp: true });
  });

  it('retries forever without a budget, and never retries files TLS cannot use', () => {
    expect(afterFirstConnectionFailure({ ...base, budgetMs: undefined, now: 1e9 })).toEqual({ giveUp: false, waitMs: 8_000 });
    expect(afterFirstConnectionFailure({ ...base, problem: 'credentials', now: 1_000 })).toEqual({ giveUp: true });
  });
});
