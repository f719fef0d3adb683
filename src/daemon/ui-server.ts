/**
 * The web UI's HTTP server (berthd --ui): binds 127.0.0.1 only, serves the built
 * static app (dist/ui, made by scripts/build-ui.ts) and forwards `/api/...` to
 * the very handler the unix socket serves, so the UI uses the same API as the
 * CLI. `/api/events` is the same event stream as server-sent events.
 *
 * Every request needs the UI token (generated at start unless given, written to
 * `<state-dir>/ui-token` with mode 0600): `Authorization: Bearer T`, the
 * `berth_ui_token` cookie, or `?token=T` once (answered with a redirect that sets
 * the cookie: HttpOnly, SameSite=Strict, so no other site can send it). Without
 * it: 401. The Host header must name 127.0.0.1/localhost and the port (DNS
 * rebinding), and a non-GET request with an Origin must come from the UI itself.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import type { Server } from "bun";
import { errorResponse } from "../api/http.ts";
import { eventStream } from "../api/observe.ts";
import { invalid, unavailable } from "../errors.ts";
import type { EventBus } from "../observe/events.ts";

export const UI_HOST = "127.0.0.1";
export const DEFAULT_UI_PORT = 7777;
export const UI_TOKEN_FILE = "ui-token";
export const TOKEN_COOKIE = "berth_ui_token";
const MIN_TOKEN_LENGTH = 16;

export interface UiServerOptions {
  port: number;
  token: string;
  /** Directory with the built app (index.html, JS, CSS). */
  dir: string;
  events: EventBus;
  /** The daemon's API handler (the one behind the unix socket). */
  api: (r: Request) => Promise<Response>;
}

/** A fresh random token (32 bytes, base64url). */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}

export function validateToken(token: string, field = "ui-token"): string {
  const t = token.trim();
  if (t.length < MIN_TOKEN_LENGTH) throw invalid("bad-ui-token", `the UI token must be at least ${MIN_TOKEN_LENGTH} characters`, field);
  if (!/^[\x21-\x7e]+$/.test(t)) throw invalid("bad-ui-token", "the UI token must be printable ASCII without spaces", field);
  return t;
}

/** Writes the token to `<stateDir>/ui-token`, readable by its owner only (created anew so the mode holds). */
export function writeTokenFile(stateDir: string, token: string): string {
  const path = join(stateDir, UI_TOKEN_FILE);
  if (existsSync(path)) unlinkSync(path);
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  return path;
}

/** Where the built UI is: next to a compiled binary (dist/berth -> dist/ui), else the source tree's dist/ui. */
export function defaultUiDir(): string {
  const candidates = [join(dirname(process.execPath), "ui"), join(import.meta.dir, "..", "..", "dist", "ui")];
  return candidates.find((d) => existsSync(join(d, "index.html"))) ?? candidates[candidates.length - 1]!;
}

function sameSecret(a: string, b: string): boolean {
  // compare digests: equal length whatever was sent, and no early exit on the first differing byte
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

function cookie(r: Request, name: string): string | undefined {
  for (const part of (r.headers.get("cookie") ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}

export type AuthResult =
  | { ok: true; via: "header" | "cookie" | "query" }
  | { ok: false; status: 401 | 403; reason: string };

/** Decides whether a request may reach the UI or its API (pure: headers and URL only). */
export function authorize(r: Request, token: string, port: number): AuthResult {
  const url = new URL(r.url);
  const host = r.headers.get("host") ?? url.host;
  const allowedHosts = [`${UI_HOST}:${port}`, `localhost:${port}`];
  if (!allowedHosts.includes(host.toLowerCase())) return { ok: false, status: 403, reason: `unexpected Host ${JSON.stringify(host)}: open the UI at http://${UI_HOST}:${port}/` };
  const origin = r.headers.get("origin");
  if (r.method !== "GET" && r.method !== "HEAD" && origin !== null && !allowedHosts.some((h) => origin.toLowerCase() === `http://${h}`)) {
    return { ok: false, status: 403, reason: `cross-origin request from ${origin} refused` };
  }
  const auth = r.headers.get("authorization");
  if (auth?.startsWith("Bearer ")) {
    return sameSecret(auth.slice(7).trim(), token) ? { ok: true, via: "header" } : { ok: false, status: 401, reason: "wrong token" };
  }
  const q = url.searchParams.get("token");
  if (q !== null) return sameSecret(q, token) ? { ok: true, via: "query" } : { ok: false, status: 401, reason: "wrong token" };
  const c = cookie(r, TOKEN_COOKIE);
  if (c !== undefined) return sameSecret(c, token) ? { ok: true, via: "cookie" } : { ok: false, status: 401, reason: "wrong token" };
  return { ok: false, status: 401, reason: "a token is required" };
}

const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

function withHeaders(res: Response, extra: Record<string, string> = {}): Response {
  for (const [k, v] of Object.entries({ ...SECURITY_HEADERS, ...extra })) res.headers.set(k, v);
  return res;
}

function refused(a: { status: number; reason: string }): Response {
  const body = `Berth web UI: ${a.reason}.\nOpen the address berthd printed at start (http://${UI_HOST}:PORT/?token=...), or read the token from ${UI_TOKEN_FILE} in berthd's state directory and send it as "Authorization: Bearer TOKEN".\n`;
  return withHeaders(new Response(body, { status: a.status, headers: { "Content-Type": "text/plain; charset=utf-8", ...(a.status === 401 ? { "WWW-Authenticate": 'Bearer realm="berth"' } : {}) } }));
}

/** Berth's newline-delimited event stream as server-sent events (one `data:` line per event, a comment every 15 s). */
function sseStream(lines: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let buf = "";
  let beat: ReturnType<typeof setInterval> | undefined;
  const reader = lines.getReader();
  return new ReadableStream<Uint8Array>({
    start(ctl) {
      ctl.enqueue(enc.encode("retry: 2000\n: berth events\n\n"));
      beat = setInterval(() => {
        try {
          ctl.enqueue(enc.encode(": keep-alive\n\n"));
        } catch {
          clearInterval(beat);
        }
      }, 15_000);
    },
    async pull(ctl) {
      const { value, done } = await reader.read();
      if (done) {
        clearInterval(beat);
        ctl.close();
        return;
      }
      buf += dec.decode(value, { stream: true });
      let i = buf.indexOf("\n");
      while (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim() !== "") ctl.enqueue(enc.encode(`data: ${line}\n\n`));
        i = buf.indexOf("\n");
      }
    },
    async cancel() {
      clearInterval(beat);
      await reader.cancel();
    },
  });
}

export class UiServer {
  private readonly opts: UiServerOptions;
  private readonly server: Server<undefined>;

  private constructor(opts: UiServerOptions) {
    this.opts = opts;
    try {
      this.server = Bun.serve({ hostname: UI_HOST, port: opts.port, fetch: (r, s) => this.handle(r, s) });
    } catch (e) {
      throw unavailable("ui-listen", `web UI: cannot listen on ${UI_HOST}:${opts.port}: ${(e as Error).message}`, "ui-port");
    }
  }

  static start(opts: UiServerOptions): UiServer {
    if (!existsSync(join(opts.dir, "index.html"))) {
      throw unavailable("ui-not-built", `web UI: no built app in ${opts.dir} (run scripts/build.sh, or give --ui-dir)`, "ui-dir");
    }
    validateToken(opts.token);
    return new UiServer(opts);
  }

  get port(): number {
    return this.server.port ?? this.opts.port;
  }

  /** The address to open, token included. */
  get url(): string {
    return `http://${UI_HOST}:${this.port}/?token=${encodeURIComponent(this.opts.token)}`;
  }

  private async handle(r: Request, server: Server<undefined>): Promise<Response> {
    const a = authorize(r, this.opts.token, this.port);
    if (!a.ok) return refused(a);
    const url = new URL(r.url);
    if (a.via === "query" && (r.method === "GET" || r.method === "HEAD")) {
      // trade the token in the address for a cookie, and drop it from the address (history, screenshots)
      url.searchParams.delete("token");
      const cookieValue = `${TOKEN_COOKIE}=${encodeURIComponent(this.opts.token)}; Path=/; HttpOnly; SameSite=Strict`;
      return withHeaders(new Response(null, { status: 303, headers: { Location: `${url.pathname}${url.search}`, "Set-Cookie": cookieValue } }));
    }
    if (url.pathname === "/api" || url.pathname.startsWith("/api/")) {
      const path = url.pathname.slice(4) || "/";
      if (path === "/events" && r.method === "GET") {
        server.timeout(r, 0); // long-lived
        try {
          const lines = eventStream(this.opts.events, { method: "GET", path, query: url.searchParams, body: undefined });
          return withHeaders(new Response(sseStream(lines), { headers: { "Content-Type": "text/event-stream" } }));
        } catch (e) {
          const er = errorResponse(e);
          return withHeaders(Response.json(er.body, { status: er.status }));
        }
      }
      const body = r.method === "GET" || r.method === "HEAD" ? undefined : await r.arrayBuffer();
      const forwarded = new Request(`http://berth${path}${url.search}`, { method: r.method, headers: r.headers, ...(body ? { body } : {}) });
      return withHeaders(await this.opts.api(forwarded));
    }
    if (r.method !== "GET" && r.method !== "HEAD") return withHeaders(new Response("method not allowed\n", { status: 405 }));
    const file = this.staticFile(url.pathname);
    if (!file) return withHeaders(new Response("not found\n", { status: 404, headers: { "Content-Type": "text/plain; charset=utf-8" } }));
    return withHeaders(new Response(Bun.file(file)));
  }

  /** The file under the app directory for a path; undefined for anything outside it or missing. */
  private staticFile(pathname: string): string | undefined {
    let rel: string;
    try {
      rel = decodeURIComponent(pathname);
    } catch {
      return undefined;
    }
    if (rel === "/" || rel === "") rel = "/index.html";
    const root = normalize(this.opts.dir);
    const full = normalize(join(root, rel));
    if (!full.startsWith(root.endsWith(sep) ? root : root + sep)) return undefined;
    try {
      return statSync(full).isFile() ? full : undefined;
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    await this.server.stop(true);
  }
}

/** Reads a token from a file (first line), for --ui-token-file. */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw invalid("bad-ui-token-file", `cannot read the UI token file ${path}: ${(e as Error).message}`, "ui-token-file");
  }
  return validateToken(text.split("\n")[0] ?? "", "ui-token-file");
}
