/**
 * Why the agent could not connect, in words an installer can act on, and when it should stop trying. Pure: the MQTT
 * link feeds it the SDK's error text and the clock.
 *
 * The first connection has a budget (agent.json `firstConnectionBudgetSeconds`): a robot whose credentials, CA or
 * endpoint are wrong never connects, and an agent that kept retrying quietly would look healthy under systemd. When
 * the budget has passed with no CONNACK, the agent exits with a code saying which kind of problem it last saw, so
 * systemd restarts it (a fixed file is read again) and the journal shows why. Once it has connected, outages never end
 * it: the SDK reconnects forever.
 *
 * Exit codes (sysexits.h):
 * - 78 EX_CONFIG: the robot's own setup is wrong — key and certificate not a pair, a CA that does not verify the
 *   endpoint, a certificate the broker refuses, a clock outside the certificates' validity;
 * - 69 EX_UNAVAILABLE: the endpoint could not be reached (DNS, refused, no route, no answer) or the cause is unknown.
 */

import { assertNever } from '../../lib/assert-never.js';

export type ConnectionProblem =
  /** The TLS context could not be built from certificateFile / privateKeyFile / caFile. */
  | 'credentials'
  /** The TLS handshake failed: a CA that does not verify the broker, a name mismatch, a clock out of range. */
  | 'tls'
  /** TLS came up (or nearly) and the broker closed the connection or refused the CONNECT: it does not accept us. */
  | 'rejected'
  /** Nothing answered: DNS, connection refused, no route, timeouts. */
  | 'unreachable'
  | 'unknown';

export interface ConnectionDiagnosis {
  readonly problem: ConnectionProblem;
  /** What to check, naming the config fields. */
  readonly check: string;
}

export const EXIT_CONFIG = 78;
export const EXIT_UNAVAILABLE = 69;

export interface ConnectionTarget {
  readonly endpoint: string;
  readonly port: number;
}

const CREDENTIALS = /AWS_IO_TLS_CTX_ERROR|AWS_IO_FILE_VALIDATION_FAILURE/;
const REJECTED =
  /Server rejected connection|CONNACK_CONNECTION_REFUSED|AWS_IO_TLS_ERROR_READ_FAILURE|AWS_IO_TLS_ALERT_NOT_GRACEFUL|AWS_IO_TLS_CLOSED_ABORT|AWS_ERROR_MQTT_UNEXPECTED_HANGUP|AWS_IO_TLS_BAD_CERTIFICATE|AWS_IO_TLS_PEER_CERTIFICATE|AWS_IO_TLS_ERROR_ALERT_RECEIVED/;
const TLS = /AWS_IO_TLS_/;
const UNREACHABLE =
  /AWS_IO_SOCKET_(?:CONNECTION_REFUSED|TIMEOUT|NO_ROUTE_TO_HOST|NETWORK_DOWN|CONNECT_ABORTED|CLOSED|INVALID_ADDRESS)|AWS_IO_DNS_|AWS_ERROR_MQTT_TIMEOUT|CONNACK_TIMEOUT/;

/** The kind of problem behind an SDK connection error, and what to check for it. */
export function diagnoseConnectionFailure(message: string, target: ConnectionTarget): ConnectionDiagnosis {
  const problem: ConnectionProblem = CREDENTIALS.test(message)
    ? 'credentials'
    : REJECTED.test(message)
      ? 'rejected'
      : TLS.test(message)
        ? 'tls'
        : UNREACHABLE.test(message)
          ? 'unreachable'
          : 'unknown';
  return { problem, check: connectionCheck(problem, target) };
}

/** What to check for a `problem` connecting to `target`, naming the agent.json fields. */
export function connectionCheck(problem: ConnectionProblem, { endpoint, port }: ConnectionTarget): string {
  const reach =
    `check endpoint (${endpoint}) and port (${port}): the IoT Core data endpoint is ` +
    '`aws iot describe-endpoint --endpoint-type iot:Data-ATS` on 8883; then DNS, the network (Wi-Fi up?) and firewalls';
  switch (problem) {
    case 'credentials':
      return (
        'check that privateKeyFile is the key of certificateFile (a pair issued together) and that both, and caFile, ' +
        'are readable unencrypted PEM files'
      );
    case 'tls':
      return (
        `check that caFile is the CA that signed ${endpoint}'s certificate (AmazonRootCA1.pem for IoT Core, the ` +
        "local cloud's ca.pem for it), that endpoint is the name on that certificate, and the clock (date -u): " +
        'certificates are not valid before the robot has the right time'
      );
    case 'rejected':
      return (
        'the broker refused the robot: check that certificateFile is registered and ACTIVE with a policy that allows ' +
        'iot:Connect as the thing name (for a local broker: issued by its CA), that privateKeyFile belongs to it, ' +
        'and the clock (date -u)'
      );
    case 'unreachable':
      return reach;
    case 'unknown':
      return `${reach}; then caFile, certificateFile, privateKeyFile and the clock`;
    default:
      return assertNever(problem);
  }
}

/** How the agent should exit after giving up on a first connection whose last failure was `problem`. */
export function exitCodeFor(problem: ConnectionProblem): number {
  switch (problem) {
    case 'credentials':
    case 'tls':
    case 'rejected':
      return EXIT_CONFIG;
    case 'unreachable':
    case 'unknown':
      return EXIT_UNAVAILABLE;
    default:
      return assertNever(problem);
  }
}

/**
 * After a failed first-connection attempt: give up, or wait and try again. With no budget the link retries forever.
 * Otherwise the wait never runs past the budget's end, and the first failure at or after it gives up (so one last
 * attempt is made at the deadline). A `credentials` failure gives up at once: the same files fail the same way.
 */
export function afterFirstConnectionFailure(input: {
  readonly problem: ConnectionProblem;
  readonly startedAt: number;
  readonly now: number;
  readonly budgetMs: number | undefined;
  readonly delayMs: number;
}): { readonly giveUp: true } | { readonly giveUp: false; readonly waitMs: number } {
  const { problem, startedAt, now, budgetMs, delayMs } = input;
  if (problem === 'credentials') return { giveUp: true };
  if (budgetMs === undefined) return { giveUp: false, waitMs: delayMs };
  const remaining = startedAt + budgetMs - now;
  if (remaining <= 0) return { giveUp: true };
  return { giveUp: false, waitMs: Math.min(delayMs, remaining) };
}

