/** How a pretty line is coloured: on a terminal, unless NO_COLOR is set. */
export interface PrettyOptions {
  color: boolean;
}

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '90' },
  20: { name: 'DEBUG', color: '36' },
  30: { name: 'INFO', color: '32' },
  40: { name: 'WARN', color: '33' },
  50: { name: 'ERROR', color: '31' },
  60: { name: 'FATAL', color: '35' },
};
// Fields every line has, shown in the line's head rather than as key=value.
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'err']);
const BARE_VALUE = /^[\w.:/@+?=&%#~,-]+$/;

/**
 * Turns one pino JSON line into one human line: local date and time, level, the logger's name,
 * the message, then the other fields as key=value; an error's stack follows, indented. A line that
 * is not pino JSON is passed through as it is.
 */
export function prettyLogLine(json: string, options: PrettyOptions): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = LEVELS[Number(entry.level)] ?? { name: String(entry.level).toUpperCase(), color: '0' };
  const paint = (code: string, text: string) => (options.color ? `\u001b[${code}m${text}\u001b[0m` : text);
  const head = [
    paint('2', localTime(typeof entry.time === 'number' ? new Date(entry.time) : new Date())),
    paint(level.color, level.name.padEnd(5)),
    typeof entry.name === 'string' ? paint('2', `[${entry.name}]`) : undefined,
    typeof entry.msg === 'string' ? entry.msg : undefined,
  ].filter(Boolean);
  const fields = Object.entries(entry)
    .filter(([key]) => !HEAD_FIELDS.has(key))
    .map(([key, value]) => `${paint('2', `${key}=`)}${fieldValue(value)}`);
  const lines = [[...head, ...fields].join(' ')];
  const err = entry.err as { message?: unknown; stack?: unknown } | string | undefined;
  if (typeof err === 'string') lines.push(`    ${err}`);
  else if (err) lines.push(indent(String(err.stack ?? err.message ?? JSON.stringify(err))));
  return `${lines.join('\n')}\n`;
}

function fieldValue(value: unknown): string {
  if (typeof value === 'string') return BARE_VALUE.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

/** `2026-12-01 10:23:45.123`, in the machine's time zone (the one its operator reads). */
function localTime(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}
