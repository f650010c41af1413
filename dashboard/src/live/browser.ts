import type { LiveEnvironment } from './environment.js';

/** The live feed's environment in the page: WebSocket, requestAnimationFrame, timers, performance.now. */
export const browserLiveEnvironment: LiveEnvironment = {
  openSocket(url, handlers) {
    const socket = new WebSocket(url);
    let closed = false;
    const closeOnce = () => {
      if (closed) return;
      closed = true;
      handlers.onClose();
    };
    socket.onopen = () => handlers.onOpen();
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data === 'string') handlers.onMessage(event.data);
    };
    socket.onerror = () => {
      closeOnce();
      socket.close();
    };
    socket.onclose = () => closeOnce();
    return {
      send: (text) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(text);
      },
      close: () => {
        closed = true;
        socket.close();
      },
    };
  },
  requestFrame(callback) {
    const id = requestAnimationFrame(() => callback());
    return () => cancelAnimationFrame(id);
  },
  setTimer(callback, ms) {
    const id = setTimeout(callback, ms);
    return () => clearTimeout(id);
  },
  now: () => performance.now(),
  random: () => Math.random(),
};
