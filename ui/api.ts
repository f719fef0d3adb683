/** The UI's API client: the same API the CLI uses, under /api on the UI's own origin (the token is a cookie). */
import type { BerthEvent } from "./types.ts";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  constructor(status: number, message: string, code = "", field?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`/api${path}`, {
      method,
      credentials: "same-origin",
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }),
    });
  } catch (e) {
    throw new ApiError(0, `berthd cannot be reached: ${(e as Error).message}`);
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.trim() || `${res.status} ${res.statusText}`;
    let code = "";
    let field: string | undefined;
    try {
      const j = JSON.parse(text) as { message?: string; code?: string; field?: string };
      message = j.message ?? message;
      code = j.code ?? "";
      field = j.field;
    } catch {
      /* plain text */
    }
    throw new ApiError(res.status, message, code, field);
  }
  return (text === "" ? undefined : JSON.parse(text)) as T;
}

export type LiveState = "connecting" | "live" | "reconnecting";

/** Follows berthd's event stream (server-sent events); EventSource reconnects by itself. */
export function followEvents(onEvent: (e: BerthEvent) => void, onState: (s: LiveState) => void): () => void {
  // live events only: the caller reloads the topology whenever the stream (re)opens
  const es = new EventSource("/api/events");
  onState("connecting");
  es.onopen = () => onState("live");
  es.onerror = () => onState("reconnecting");
  es.onmessage = (m: MessageEvent<string>) => {
    try {
      onEvent(JSON.parse(m.data) as BerthEvent);
    } catch {
      /* not an event */
    }
  };
  return () => es.close();
}
