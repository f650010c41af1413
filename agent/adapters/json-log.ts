/**
 * The agent's log: one JSON object per line on stdout (`{"time","level","message",...fields}`), what journald and
 * any log shipper on the Pi can parse without a pattern. No dependency: a logging library would cost the agent more
 * memory than the whole log path. Errors in fields become `{ name, message, code?, cause? }` (JSON.stringify would
 * print `{}` for them), and a field that cannot be serialised never makes logging throw.
 */

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

export interface JsonLogOptions {
  /** Default: `LOG_LEVEL` from the environment if it names a level, else `info`. */
  readonly level?: LogLevel;
  /** Where lines go. Default: process.stdout. */
  readonly write?: (line: string) => void;
  readonly now?: () => Date;
  /** Fields on every line (e.g. the thing name). */
  readonly fields?: LogFields;
}

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

/** `LOG_LEVEL` if it names a level (any case), else undefined. */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): LogLevel | undefined {
  const value = env.LOG_LEVEL?.trim().toLowerCase();
  return isLogLevel(value) ? value : undefined;
}

export function createJsonLog(options: JsonLogOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? logLevelFromEnv() ?? 'info');
  const write = options.write ?? ((line: string) => void process.stdout.write(line));
  const now = options.now ?? (() => new Date());

  const make = (base: LogFields): Logger => {
    const emit = (level: LogLevel, message: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(level) < threshold) return;
      write(`${formatLine({ time: now().toISOString(), level, message, ...base, ...fields })}\n`);
    };
    return {
      debug: (message, fields) => emit('debug', message, fields),
      info: (message, fields) => emit('info', message, fields),
      warn: (message, fields) => emit('warn', message, fields),
      error: (message, fields) => emit('error', message, fields),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(options.fields ?? {});
}

/** A logger that drops everything (tests, libraries' optional logs). */
export const silentLog: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLog,
};

/** An error as plain data: what a log line should carry about it. */
export function serializeError(error: unknown, depth = 0): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: typeof error === 'string' ? error : safeString(error) };
  const result: Record<string, unknown> = { name: error.name, message: error.message };
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') result.code = code;
  // A cause chain can be cyclic; three levels say enough.
  if (error.cause !== undefined && depth < 3) result.cause = serializeError(error.cause, depth + 1);
  return result;
}

function formatLine(record: LogFields): string {
  try {
    return JSON.stringify(record, (_key, value: unknown) => {
      if (value instanceof Error) return serializeError(value);
      if (typeof value === 'bigint') return value.toString();
      return value;
    });
  } catch (error) {
    // A cyclic field: keep the line, lose the fields.
    return JSON.stringify({
      time: record.time,
      level: record.level,
      message: record.message,
      logError: `fields could not be serialised: ${(error as Error).message}`,
    });
  }
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return '(unprintable)';
  }
}
