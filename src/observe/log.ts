/**
 * Structured logs: one JSON object per line on stderr, with a level, a message,
 * and the operation and container id where there is one.
 */
export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LogFields {
  op?: string;
  containerId?: string;
  [k: string]: unknown;
}

export class Logger {
  private readonly min: number;
  private readonly base: LogFields;
  private readonly write: (line: string) => void;

  constructor(opts: { level?: Level; base?: LogFields; write?: (line: string) => void } = {}) {
    this.min = ORDER[opts.level ?? "info"];
    this.base = opts.base ?? {};
    this.write = opts.write ?? ((l) => console.error(l));
  }

  child(fields: LogFields): Logger {
    return new Logger({ level: levelOf(this.min), base: { ...this.base, ...fields }, write: this.write });
  }

  log(level: Level, msg: string, fields: LogFields = {}): void {
    if (ORDER[level] < this.min) return;
    this.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...this.base, ...fields }));
  }
  debug(msg: string, f?: LogFields): void {
    this.log("debug", msg, f);
  }
  info(msg: string, f?: LogFields): void {
    this.log("info", msg, f);
  }
  warn(msg: string, f?: LogFields): void {
    this.log("warn", msg, f);
  }
  error(msg: string, f?: LogFields): void {
    this.log("error", msg, f);
  }
}

function levelOf(n: number): Level {
  return (Object.entries(ORDER).find(([, v]) => v === n)?.[0] as Level) ?? "info";
}

export function parseLevel(s: string): Level {
  if (s in ORDER) return s as Level;
  throw new Error(`log level must be one of ${Object.keys(ORDER).join(", ")} (got ${s})`);
}
