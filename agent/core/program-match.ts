import { posix } from 'node:path';

/**
 * What program a process runs, read from its argv, and whether that is a watched program. A watched name that merely
 * appears in a command line (`tail -f 4_xlerobot_teleop_keyboard.py`, `vim …`, `grep …`, or another program that takes
 * the script's name as an argument) is a mention, not the program: only the program counts.
 *
 * The program of a command line:
 *
 * - Python (`python`, `python3`, `python3.11`, `pypy3`, by base name, any folder, e.g. a venv's `bin/python`): its
 *   options are skipped (`-u`, `-O`, `-B`, clusters like `-uB`, and the ones taking a value: `-W arg`, `-X opt`,
 *   `--check-hash-based-pycs mode`); then `-m module` runs a module, `-c code`, `-` (stdin) or `--help`/`--version`
 *   run no program file, and the first other argument is the script's path. This is also what a script started by
 *   its shebang or a console script (`lerobot-teleoperate`) looks like: the kernel puts the interpreter in front.
 * - Node (`node`, `nodejs`): likewise, with `-e`/`-p` (and `--eval`/`--print`) running no file and `-r`/`--require`,
 *   `--import`, `--loader`, `-C`/`--conditions` taking a value.
 * - `env` (`/usr/bin/env python3 script.py`, what `#!/usr/bin/env python3` gives before env execs): its options and
 *   `NAME=value` settings are skipped and the rest is read again as a command line.
 * - Anything else runs itself: its program is argv[0] (so a native teleop binary can be watched by name too).
 *
 * Wrappers that start the interpreter as a child (`uv run`, `poetry run`, a shell script) are not followed: the
 * interpreter they start is a process of its own, and is matched as such.
 *
 * A watched name matches a program when:
 *
 * - it is the module run with `-m` (`lerobot.robots.lekiwi.lekiwi_host`), or the module's own file run as a script
 *   (`…/lerobot/robots/lekiwi/lekiwi_host.py`);
 * - without a `/`, it is the base name of the program's path (`4_xlerobot_teleop_keyboard.py` matches
 *   `python3 -u /home/pi/XLeRobot/4_xlerobot_teleop_keyboard.py` and `python ./4_xlerobot_teleop_keyboard.py`);
 * - with a `/`, it is the program's path or the path's tail from a folder boundary (`examples/lekiwi/teleoperate.py`
 *   matches `python examples/lekiwi/teleoperate.py` and `python /opt/lerobot/examples/lekiwi/teleoperate.py`).
 */

export type Program =
  /** A file: the script an interpreter runs, or the executable itself. As written in argv (maybe relative). */
  | { readonly kind: 'file'; readonly path: string }
  /** A module run with `python -m`. */
  | { readonly kind: 'module'; readonly name: string };

interface InterpreterSyntax {
  /** Short options whose value follows (attached, `-Wignore`, or as the next argument). */
  readonly shortWithValue: string;
  /** Short options after which the interpreter runs no file (`-c code`, `-e code`). */
  readonly shortNoFile: string;
  /** The short option naming a module to run, if any. */
  readonly shortModule?: string;
  /** Long options whose value may be the next argument (a `--name=value` form carries its own). */
  readonly longWithValue: readonly string[];
  /** Long options after which the interpreter runs no file. */
  readonly longNoFile: readonly string[];
}

const PYTHON: InterpreterSyntax = {
  shortWithValue: 'WX',
  shortNoFile: 'chV',
  shortModule: 'm',
  longWithValue: ['--check-hash-based-pycs'],
  longNoFile: ['--help', '--version', '--help-env', '--help-xoptions', '--help-all'],
};

const NODE: InterpreterSyntax = {
  shortWithValue: 'rC',
  shortNoFile: 'epchv',
  longWithValue: ['--require', '--import', '--loader', '--experimental-loader', '--conditions', '--title', '--input-type'],
  longNoFile: ['--eval', '--print', '--check', '--help', '--version', '--interactive', '--test', '--run'],
};

const PYTHON_NAME = /^(?:python|pypy)(?:\d+(?:\.\d+)*)?$/;
const NODE_NAME = /^(?:node|nodejs)$/;
/** A dotted Python module path, e.g. lerobot.robots.lekiwi.lekiwi_host. */
const MODULE_NAME = /^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$/;

/** The program `argv` runs (see the file comment), or null when it runs none (`python -c …`, an empty argv). */
export function programOf(argv: readonly string[]): Program | null {
  const command = argv[0];
  if (command === undefined || command === '') return null;
  const name = posix.basename(command);
  if (name === 'env') return programOf(afterEnv(argv.slice(1)));
  if (PYTHON_NAME.test(name)) return interpreted(argv.slice(1), PYTHON);
  if (NODE_NAME.test(name)) return interpreted(argv.slice(1), NODE);
  return { kind: 'file', path: command };
}

/** Whether `program` is the watched `name` (see the file comment). */
export function programMatches(program: Program, name: string): boolean {
  if (program.kind === 'module') return program.name === name;
  const path = posix.normalize(program.path);
  if (!name.includes('/')) {
    if (posix.basename(path) === name) return true;
    // A module's own file run as a script: lerobot/robots/lekiwi/lekiwi_host.py for lerobot.robots.lekiwi.lekiwi_host.
    if (!MODULE_NAME.test(name)) return false;
    const moduleFile = `${name.replaceAll('.', '/')}.py`;
    return path === moduleFile || path.endsWith(`/${moduleFile}`);
  }
  const wanted = posix.normalize(name);
  return path === wanted || (!wanted.startsWith('/') && path.endsWith(`/${wanted}`));
}

/** The watched names that the program of `argv` matches, in the order given. */
export function matchingPrograms(argv: readonly string[], names: readonly string[]): string[] {
  const program = programOf(argv);
  return program === null ? [] : names.filter((name) => programMatches(program, name));
}

/**
 * /proc/<pid>/cmdline as argv: NUL-separated, with a trailing NUL. A process that rewrote its command line as one
 * string (setproctitle) comes back as one argument, whose program is then that whole string.
 */
export function argvOfCmdline(cmdline: string): string[] {
  if (cmdline === '') return [];
  const parts = cmdline.split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

function interpreted(args: readonly string[], syntax: InterpreterSyntax): Program | null {
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index]!;
    if (arg === '--') {
      const script = args[index + 1];
      return script === undefined ? null : { kind: 'file', path: script };
    }
    if (arg === '-') return null;
    if (arg.startsWith('--')) {
      const [option] = arg.split('=', 1) as [string];
      if (syntax.longNoFile.includes(option)) return null;
      if (syntax.longWithValue.includes(option) && !arg.includes('=')) index += 1;
      continue;
    }
    if (!arg.startsWith('-')) return { kind: 'file', path: arg };
    // A cluster of short options, e.g. -uB, -Wignore, -mlerobot.x, -OO.
    for (let at = 1; at < arg.length; at += 1) {
      const letter = arg[at]!;
      const attached = arg.slice(at + 1);
      if (letter === syntax.shortModule) {
        const module = attached !== '' ? attached : args[index + 1];
        return module === undefined || module === '' ? null : { kind: 'module', name: module };
      }
      if (syntax.shortNoFile.includes(letter)) return null;
      if (syntax.shortWithValue.includes(letter)) {
        if (attached === '') index += 1;
        break;
      }
    }
  }
  return null;
}

/** What `env [options] [NAME=value]… command…` runs: the command, with `-S "a b"` split as env does. */
function afterEnv(args: readonly string[]): string[] {
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index]!;
    if (arg === '--') return args.slice(index + 1);
    if (arg === '-S' || arg === '--split-string') {
      return [...(args[index + 1] ?? '').split(/\s+/).filter(Boolean), ...args.slice(index + 2)];
    }
    if (arg.startsWith('-S') && !arg.startsWith('--')) {
      return [...arg.slice(2).split(/\s+/).filter(Boolean), ...args.slice(index + 1)];
    }
    if (arg === '-u' || arg === '--unset' || arg === '-C' || arg === '--chdir') {
      index += 1;
      continue;
    }
    if (arg.startsWith('-')) continue;
    if (/^[^=]+=/.test(arg)) continue;
    return args.slice(index);
  }
  return [];
}
