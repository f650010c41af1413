import type { Socket } from 'node:net';
import * as tls from 'node:tls';
import { IOT_MAX_PAYLOAD_BYTES } from '../../schemas/iot-limits.js';
import type { BrokerLog } from './contract.js';

/**
 * The broker's front door: a TLS server that requires a client certificate chaining to the local CA, and the guard
 * against packets too large to be within IoT Core's limits.
 *
 * INVARIANTS
 * - Node itself refuses a certificate that does not chain to the CA or is outside its validity period (the refusal
 *   is logged with the verification error's code); only a verified TLS connection reaches `onConnection`;
 * - a client has HANDSHAKE_TIMEOUT_MS to finish its handshake;
 * - every socket, verified or not, is known until it closes, so `destroyAll` can end them all on stop;
 * - a listen error (e.g. the port is taken) rejects `startTlsListener`, with nothing left listening.
 */

/** A TLS client has this long to finish its handshake. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * The largest MQTT remaining length a client may announce: a PUBLISH at the payload limit with the longest topic
 * MQTT can carry and a packet id. Anything longer cannot be within IoT Core's limits; it is refused unread.
 */
export const MAX_REMAINING_LENGTH = IOT_MAX_PAYLOAD_BYTES + 2 + 65_535 + 2;

export interface TlsListenerOptions {
  readonly port: number;
  readonly host: string;
  readonly caCertificatePem: string;
  readonly serverCertificatePem: string;
  readonly serverPrivateKeyPem: string;
  readonly log: BrokerLog;
  /** A connection whose client certificate Node verified. */
  readonly onConnection: (socket: tls.TLSSocket) => void;
}

export interface TlsListener {
  readonly port: number;
  /** Stops accepting connections; resolves once every socket has closed. */
  close(): Promise<void>;
  /** Destroys every socket still open. */
  destroyAll(): void;
}

export async function startTlsListener(options: TlsListenerOptions): Promise<TlsListener> {
  const { log } = options;
  const sockets = new Set<Socket>();
  const server = tls.createServer({
    requestCert: true,
    rejectUnauthorized: true,
    ca: options.caCertificatePem,
    cert: options.serverCertificatePem,
    key: options.serverPrivateKeyPem,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('secureConnection', options.onConnection);
  server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    // Node refuses a bad client certificate by closing the socket after the handshake (no alert under TLS 1.3), so
    // the error itself only says "socket hang up"; the verification failure is on the socket.
    const refusal = (socket as tls.TLSSocket & { authorizationError?: string }).authorizationError;
    log({
      level: refusal ? 'warn' : 'debug',
      message: refusal ? `TLS connection refused: client certificate ${refusal}` : `TLS handshake failed: ${error.message}`,
      code: refusal ?? error.code,
      remoteAddress: socket.remoteAddress,
    });
  });
  server.on('error', (error: Error) => log({ level: 'error', message: 'TLS server error', error: error.message }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  let closed: Promise<void> | undefined;
  return {
    port: typeof address === 'object' && address ? address.port : options.port,
    close: () => (closed ??= new Promise<void>((resolve) => server.close(() => resolve()))),
    destroyAll() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/**
 * Closes the connection as soon as a packet announces a remaining length over MAX_REMAINING_LENGTH, instead of
 * buffering megabytes only to refuse them. aedes (1.2) has no packet size limit; this wraps its mqtt-packet parser's
 * length step (`_parseLength`) of one client, and does nothing if that ever changes (the authorizer still refuses the
 * payload).
 */
export function refuseOversizedPackets(client: object, onRefused: () => void): void {
  type Parser = { packet: { length: number }; _parseLength?: () => boolean; _emitError?: (error: Error) => void };
  const parser = (client as { _parser?: Parser })._parser;
  const parseLength = parser?._parseLength;
  if (!parser || typeof parseLength !== 'function' || typeof parser._emitError !== 'function') return;
  parser._parseLength = function (this: Parser): boolean {
    const complete = parseLength.call(this);
    if (complete && this.packet.length > MAX_REMAINING_LENGTH) {
      onRefused();
      this._emitError!(new Error(`packet of ${this.packet.length} bytes is over the broker's limit`));
      return false;
    }
    return complete;
  };
}
