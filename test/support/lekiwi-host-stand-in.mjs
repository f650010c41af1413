// A stand-in for LeRobot's LeKiwi host (`python -m lerobot.robots.lekiwi.lekiwi_host`) for teleoperation tests and
// benches: ZMQ PULL (CONFLATE) bound on the command port takes JSON actions, ZMQ PUSH (SNDHWM=2) bound on the
// observation port sends, at 30 Hz, one single-part JSON string as the host does (`send_string(json.dumps(obs))`):
// the state plus each camera's JPEG frame in base64 under the camera's name, dropped when nobody pulls (the real host
// sends with NOBLOCK). Single-part matters: LeRobot's client PULLs with CONFLATE, which libzmq allows only for
// single-part messages. It runs as its own process so that /proc scanning
// sees it, with `lekiwi-host-stand-in` in its command line.
//
//   node test/support/lekiwi-host-stand-in.mjs --command-port P --observation-port Q
//
// Port 0 picks a free port. Once bound it prints one JSON line: {"commandPort":P,"observationPort":Q,"pid":N}.
// It exits on SIGTERM/SIGINT or when stdin closes (so a crashed test leaves nothing behind).
import { parseArgs } from 'node:util';
import * as zmq from 'zeromq';

const { values } = parseArgs({
  options: {
    'command-port': { type: 'string', default: '0' },
    'observation-port': { type: 'string', default: '0' },
    'frame-bytes': { type: 'string', default: '2048' },
  },
});

const commands = new zmq.Pull({ conflate: true, linger: 0 });
const observations = new zmq.Push({ sendHighWaterMark: 2, sendTimeout: 0, linger: 0 });
const portOf = (socket) => Number(new URL(socket.lastEndpoint.replace('tcp://', 'http://')).port);

await commands.bind(`tcp://127.0.0.1:${values['command-port'] === '0' ? '*' : values['command-port']}`);
await observations.bind(`tcp://127.0.0.1:${values['observation-port'] === '0' ? '*' : values['observation-port']}`);

const frame = Buffer.alloc(Number(values['frame-bytes']), 0x55);
frame.set([0xff, 0xd8, 0xff, 0xe0], 0);
frame.set([0xff, 0xd9], frame.length - 2);
const frameBase64 = frame.toString('base64');

let lastAction = {};
let actions = 0;
let running = true;

(async () => {
  for await (const [message] of commands) {
    try {
      lastAction = JSON.parse(message.toString('utf8'));
      actions += 1;
    } catch {
      // a malformed command is ignored, as the host does
    }
  }
})().catch(() => undefined);

const timer = setInterval(() => {
  const observation = JSON.stringify({
    ...lastAction,
    'x.vel': lastAction['x.vel'] ?? 0,
    'y.vel': lastAction['y.vel'] ?? 0,
    'theta.vel': lastAction['theta.vel'] ?? 0,
    front: frameBase64,
    actionsReceived: actions,
  });
  observations.send(observation).catch(() => undefined); // EAGAIN with nobody pulling: dropped, like the host
}, 1000 / 30);

process.stdout.write(`${JSON.stringify({ commandPort: portOf(commands), observationPort: portOf(observations), pid: process.pid })}\n`);

const stop = () => {
  if (!running) return;
  running = false;
  clearInterval(timer);
  commands.close();
  observations.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
