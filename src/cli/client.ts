/** The API client used by the CLI: HTTP over berthd's unix socket. */
import { BerthError, type ErrorKind } from "../errors.ts";

export const DEFAULT_SOCKET = "/run/berth/berth.sock";

export class Client {
  readonly socket: string;
  constructor(socket: string) {
    this.socket = socket;
  }

  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`http://berth${path}`, {
        method,
        unix: this.socket,
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
      });
    } catch (e) {
      throw new BerthError(
        "unavailable",
        "daemon-unreachable",
        `cannot reach berthd at ${this.socket}: ${(e as Error).message} (is berthd running?)`,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let msg = text;
      let kind: ErrorKind = "system";
      let code = `http-${res.status}`;
      let field: string | undefined;
      try {
        const j = JSON.parse(text) as { message?: string; kind?: ErrorKind; code?: string; field?: string };
        msg = j.message ?? text;
        kind = j.kind ?? kind;
        code = j.code ?? code;
        field = j.field;
      } catch {
        /* plain text */
      }
      throw new BerthError(kind, code, msg, field);
    }
    if (text === "") return undefined as T;
    const ct = res.headers.get("content-type") ?? "";
    return (ct.includes("json") ? JSON.parse(text) : text) as T;
  }
}
