import { describe, expect, it } from 'vitest';
import { argvOfCmdline, matchingPrograms, programOf } from '../../../agent/core/program-match.js';
import { DEFAULT_TELEOPERATION_CONFIG, watchedProcesses } from '../../../agent/core/teleoperation-config.js';

const KEYBOARD = '4_xlerobot_teleop_keyboard.py';
const HOST_MODULE = 'lerobot.robots.lekiwi.lekiwi_host';
const WATCHED = watchedProcesses(DEFAULT_TELEOPERATION_CONFIG);

describe('the program a command line runs', () => {
  it.each<[string, string[]]>([
    ['tail -f on the script', ['tail', '-f', `/home/pi/XLeRobot/${KEYBOARD}`]],
    ['an editor', ['vim', KEYBOARD]],
    ['grep', ['grep', '-rn', 'teleop', KEYBOARD]],
    ['another script taking it as an argument', ['python', 'other.py', '--config', KEYBOARD]],
    ['python -c naming it', ['python3', '-c', 'import time; time.sleep(9)', KEYBOARD]],
    ['a module run with the script as an argument', ['python3', '-m', 'pdb', KEYBOARD]],
    ['the script\'s name inside a folder name', ['python3', `/tmp/${KEYBOARD}/main.py`]],
    ['an editor on the host module', ['nano', 'lerobot/robots/lekiwi/lekiwi_host.py']],
    ['pgrep for the host', ['pgrep', '-f', HOST_MODULE]],
    ['LeRobot\'s client (runs on the laptop)', ['python', 'examples/lekiwi/teleoperate.py']],
    ['node -e naming it', ['node', '-e', 'setInterval(() => {}, 1000)', KEYBOARD]],
    ['a shell running it (the python it starts is matched itself)', ['bash', '-c', `python3 ${KEYBOARD}`]],
  ])('a mention is not the program: %s', (_case, argv) => {
    // Given a process that only mentions a watched program
    // When its command line is matched against the default watched names
    // Then nothing matches
    expect(matchingPrograms(argv, WATCHED)).toEqual([]);
  });

  it.each<[string, string[], string]>([
    ['a bare script', ['python3', KEYBOARD], KEYBOARD],
    ['options and an absolute path', ['python3', '-u', `/home/pi/XLeRobot/${KEYBOARD}`], KEYBOARD],
    ['a venv interpreter, -W with its value, a relative path', ['/home/pi/.venv/bin/python3.11', '-W', 'ignore', `./${KEYBOARD}`, '--speed', '2'], KEYBOARD],
    ['clustered and attached options', ['python', '-uBWignore', '-Xdev', '-X', 'utf8', KEYBOARD], KEYBOARD],
    ['env in front (a #!/usr/bin/env python3 script)', ['/usr/bin/env', 'PYTHONUNBUFFERED=1', 'python3', `/opt/${KEYBOARD}`], KEYBOARD],
    ['env -S', ['/usr/bin/env', '-S', 'python3 -u', KEYBOARD], KEYBOARD],
    ['the host as LeRobot starts it', ['python', '-m', HOST_MODULE, '--robot.id=my_awesome_kiwi'], HOST_MODULE],
    ['the host module attached to -m', ['python3', '-u', `-m${HOST_MODULE}`], HOST_MODULE],
    ['the host module\'s file run as a script', ['python3', '/opt/lerobot/src/lerobot/robots/lekiwi/lekiwi_host.py'], HOST_MODULE],
  ])('the program is matched: %s', (_case, argv, expected) => {
    expect(matchingPrograms(argv, WATCHED)).toEqual([expected]);
  });

  it('matches a configured path by its tail from a folder boundary, and a module by its exact name', () => {
    const names = ['examples/lekiwi/teleoperate.py', 'lerobot.teleoperate'];

    expect(matchingPrograms(['python', '/opt/lerobot/examples/lekiwi/teleoperate.py'], names)).toEqual([names[0]]);
    expect(matchingPrograms(['python', './examples/lekiwi/teleoperate.py'], names)).toEqual([names[0]]);
    expect(matchingPrograms(['python', '/opt/my-examples/lekiwi/teleoperate.py'], names)).toEqual([]);
    expect(matchingPrograms(['python', '-m', 'lerobot.teleoperate', '--robot.type=so100_follower'], names)).toEqual([names[1]]);
    expect(matchingPrograms(['python', '-m', 'lerobot.teleoperate_v2'], names)).toEqual([]);
  });

  it('a program that is not interpreted is its own program', () => {
    expect(programOf(['/usr/local/bin/xlerobot-teleop', '--joycon'])).toEqual({ kind: 'file', path: '/usr/local/bin/xlerobot-teleop' });
    expect(matchingPrograms(['/usr/local/bin/xlerobot-teleop'], ['xlerobot-teleop'])).toEqual(['xlerobot-teleop']);
  });

  it('reads /proc cmdline as argv, keeping empty arguments in the middle', () => {
    expect(argvOfCmdline(`python3\0-u\0\0${KEYBOARD}\0`)).toEqual(['python3', '-u', '', KEYBOARD]);
    expect(argvOfCmdline('')).toEqual([]);
    expect(programOf([])).toBeNull();
    expect(programOf(['python3'])).toBeNull();
    expect(programOf(['python3', '-'])).toBeNull();
  });
});
