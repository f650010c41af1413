/**
 * What the live feed needs from the page, as small interfaces: the browser provides them (live/browser.ts) and the
 * unit tests provide fakes, so the store's drivers run under Node as they do in the page.
 */

export interface SocketHandlers {
  onOpen(): void;
  onMessage(text: string): void;
  /** Once per socket, after an error too. */
  onClose(): void;
}

export interface LiveSocket {
  send(text: string): void;
  close(): void;
}

export interface LiveEnvironment {
  openSocket(url: string, handlers: SocketHandlers): LiveSocket;
  /** Runs `callback` at the next animation frame; returns its cancel. */
  requestFrame(callback: () => void): () => void;
  /** Runs `callback` after `ms`; returns its cancel. */
  setTimer(callback: () => void, ms: number): () => void;
  /** The page's clock (performance.now()). */
  now(): number;
  /** In [0, 1). */
  random(): number;
}
