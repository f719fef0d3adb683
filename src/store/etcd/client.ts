/**
 * A minimal etcd v3 client over etcd's JSON gRPC gateway (plain fetch, no npm
 * dependency): range, put, delete, txn, leases and a streaming watch. Keys and
 * values are strings here; base64 is the gateway's wire form only.
 *
 * Every transport failure becomes `unavailable` ("etcd-unreachable"), so the
 * API answers 503 while etcd is down and callers can retry.
 */
import { systemError, unavailable } from "../../errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export function b64(s: string): string {
  return Buffer.from(enc.encode(s)).toString("base64");
}

export function unb64(s: string | undefined): string {
  return s === undefined ? "" : dec.decode(Buffer.from(s, "base64"));
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  const bytes = enc.encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if ((bytes[i] ?? 0) < 0xff) {
      const out = bytes.slice(0, i + 1);
      out[i] = (out[i] ?? 0) + 1;
      return dec.decode(out);
    }
  }
  return "\0";
}

export interface KV {
  key: string;
  value: string;
  modRevision: number;
  createRevision: number;
  /** Lease id (int64 as a decimal string; "0" = none). */
  lease: string;
}

export interface RangeResult {
  kvs: KV[];
  /** The store revision the range was served at. */
  revision: number;
}

export type Compare =
  | { key: string; rangeEnd?: string; target: "MOD"; result: "EQUAL" | "LESS"; modRevision: number }
  | { key: string; target: "VALUE"; result: "EQUAL"; value: string };

export type Op = { put: { key: string; value: string; lease?: string } } | { del: { key: string; rangeEnd?: string } };

export interface WatchEvent {
  type: "PUT" | "DELETE";
  kv: KV;
}

interface RawKV {
  key?: string;
  value?: string;
  mod_revision?: string;
  create_revision?: string;
  lease?: string;
}

function kv(r: RawKV): KV {
  return {
    key: unb64(r.key),
    value: unb64(r.value),
    modRevision: Number(r.mod_revision ?? 0),
    createRevision: Number(r.create_revision ?? 0),
    lease: r.lease ?? "0",
  };
}

export class EtcdClient {
  readonly endpoint: string;
  private readonly timeoutMs: number;

  /** `endpoint`: "http://HOST:PORT" or "HOST:PORT". */
  constructor(endpoint: string, opts: { timeoutMs?: number } = {}) {
    this.endpoint = /^https?:\/\//.test(endpoint) ? endpoint.replace(/\/+$/, "") : `http://${endpoint}`;
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  private async call<T>(path: string, body: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.endpoint}${path}`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "Content-Type": "application/json" },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw unavailable("etcd-unreachable", `etcd at ${this.endpoint} is unreachable: ${(e as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      const msg = (() => {
        try {
          return (JSON.parse(text) as { message?: string; error?: string }).message ?? text;
        } catch {
          return text;
        }
      })();
      if (res.status >= 500 && /leader|timed out|unavailable|not capable/i.test(msg)) {
        throw unavailable("etcd-unavailable", `etcd ${path}: ${msg}`);
      }
      throw systemError("etcd-error", `etcd ${path}: ${res.status} ${msg}`);
    }
    return JSON.parse(text || "{}") as T;
  }

  /** Keys from `key` (to `rangeEnd`, exclusive), optionally at an older `revision`. */
  async range(key: string, o: { rangeEnd?: string; revision?: number; limit?: number } = {}): Promise<RangeResult> {
    const r = await this.call<{ header?: { revision?: string }; kvs?: RawKV[] }>("/v3/kv/range", {
      key: b64(key),
      ...(o.rangeEnd !== undefined ? { range_end: b64(o.rangeEnd) } : {}),
      ...(o.revision ? { revision: String(o.revision) } : {}),
      ...(o.limit ? { limit: String(o.limit) } : {}),
    });
    return { kvs: (r.kvs ?? []).map(kv), revision: Number(r.header?.revision ?? 0) };
  }

  async get(key: string): Promise<KV | undefined> {
    return (await this.range(key)).kvs[0];
  }

  async prefix(prefix: string): Promise<RangeResult> {
    return this.range(prefix, { rangeEnd: prefixEnd(prefix) });
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call("/v3/kv/put", { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) });
  }

  async delete(key: string, rangeEnd?: string): Promise<number> {
    const r = await this.call<{ deleted?: string }>("/v3/kv/deleterange", {
      key: b64(key),
      ...(rangeEnd !== undefined ? { range_end: b64(rangeEnd) } : {}),
    });
    return Number(r.deleted ?? 0);
  }

  /** One atomic transaction: `success` ops run if every compare holds, else `failure`. */
  async txn(compare: Compare[], success: Op[], failure: Op[] = []): Promise<{ succeeded: boolean; revision: number }> {
    const cmp = compare.map((c) =>
      c.target === "MOD"
        ? {
            key: b64(c.key),
            ...(c.rangeEnd !== undefined ? { range_end: b64(c.rangeEnd) } : {}),
            target: "MOD",
            result: c.result,
            mod_revision: String(c.modRevision),
          }
        : { key: b64(c.key), target: "VALUE", result: c.result, value: b64(c.value) },
    );
    const op = (o: Op) =>
      "put" in o
        ? { request_put: { key: b64(o.put.key), value: b64(o.put.value), ...(o.put.lease ? { lease: o.put.lease } : {}) } }
        : { request_delete_range: { key: b64(o.del.key), ...(o.del.rangeEnd !== undefined ? { range_end: b64(o.del.rangeEnd) } : {}) } };
    const r = await this.call<{ succeeded?: boolean; header?: { revision?: string } }>("/v3/kv/txn", {
      compare: cmp,
      success: success.map(op),
      failure: failure.map(op),
    });
    return { succeeded: r.succeeded === true, revision: Number(r.header?.revision ?? 0) };
  }

  /** A new lease; its id is an int64, kept as a decimal string (it does not fit a double). */
  async leaseGrant(ttlSeconds: number): Promise<string> {
    const r = await this.call<{ ID?: string; TTL?: string }>("/v3/lease/grant", { TTL: String(ttlSeconds) });
    const id = r.ID ?? "0";
    if (id === "0") throw systemError("etcd-error", "etcd granted no lease");
    return id;
  }

  /** Renews a lease once; returns the remaining TTL (0 or less: the lease is gone). */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = await this.call<{ result?: { TTL?: string } }>("/v3/lease/keepalive", { ID: id });
    return Number(r.result?.TTL ?? 0);
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call("/v3/lease/revoke", { ID: id }).catch(() => undefined);
  }

  /**
   * Watches a prefix from `startRevision` (inclusive); calls `onEvents` for each
   * batch. Resolves when the stream ends (etcd went away, or `signal` aborted);
   * rejects with `compacted` info when the start revision is gone.
   */
  async watch(
    prefix: string,
    startRevision: number,
    onEvents: (events: WatchEvent[], revision: number) => void,
    signal: AbortSignal,
  ): Promise<{ compactRevision?: number }> {
    const res = await fetch(`${this.endpoint}/v3/watch`, {
      method: "POST",
      body: JSON.stringify({
        create_request: { key: b64(prefix), range_end: b64(prefixEnd(prefix)), start_revision: String(startRevision) },
      }),
      headers: { "Content-Type": "application/json" },
      signal,
    });
    if (!res.ok || !res.body) throw unavailable("etcd-unreachable", `etcd watch: ${res.status}`);
    let buf = "";
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      // the gateway streams one JSON object per line
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
        if (!line) continue;
        const msg = JSON.parse(line) as {
          result?: { header?: { revision?: string }; events?: { type?: string; kv?: RawKV }[]; compact_revision?: string; canceled?: boolean };
          error?: unknown;
        };
        const r = msg.result;
        if (!r) continue;
        if (r.compact_revision && Number(r.compact_revision) > 0) return { compactRevision: Number(r.compact_revision) };
        if (r.canceled) return {};
        const events = (r.events ?? []).map((e) => ({ type: e.type === "DELETE" ? ("DELETE" as const) : ("PUT" as const), kv: kv(e.kv ?? {}) }));
        if (events.length > 0) onEvents(events, Number(r.header?.revision ?? 0));
      }
    }
    return {};
  }
}
