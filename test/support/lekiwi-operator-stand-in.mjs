// A remote LeKiwi operator as its own process (so a test can SIGKILL it: an operator that vanishes without closing
// its socket): ZMQ PUSH connected to the command port, sending a LeKiwi action (6 arm `.pos` + `x.vel`, `y.vel`,
// `theta.vel`) at --rate Hz (default 30) from the start.
//
//   node test/support/lekiwi-operator-stand-in.mjs --command-port P [--host 127.0.0.1] [--rate 30]
//
// Prints {"driving":true,"pid":N} after the first action went out.
import { parseArgs } from 'node:util';
import * as zmq from 'zeromq';

const { values } = parseArgs({
  options: {
    'command-port': { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    rate: { type: 'string', default: '30' },
  },
});
if (!values['command-port']) {
  process.stderr.write('--command-port is required\n');
  process.exit(2);
}

const push = new zmq.Push({ linger: 0 });
push.connect(`tcp://${values.host}:${values['command-port']}`);
let step = 0;
const action = () => {
  step += 1;
  const t = step / 30;
  return JSON.stringify({
    'arm_shoulder_pan.pos': 10 * Math.sin(t),
    'arm_shoulder_lift.pos': -35.123456789 + Math.cos(t),
    'arm_elbow_flex.pos': 42.987654321 + Math.sin(t / 2),
    'arm_wrist_flex.pos': 71.55555555 - Math.cos(t / 3),
    'arm_wrist_roll.pos': 1.0123456789 * Math.sin(t),
    'arm_gripper.pos': 12.345678901,
    'x.vel': 0.1 + 0.01 * Math.sin(t),
    'y.vel': 0.0,
    'theta.vel': 15.0 * Math.cos(t),
  });
};
let announced = false;
setInterval(() => {
  push.send(action()).then(
    () => {
      if (!announced) process.stdout.write(`${JSON.stringify({ driving: true, pid: process.pid })}\n`);
      announced = true;
    },
    () => undefined,
  );
}, 1000 / Number(values.rate));
