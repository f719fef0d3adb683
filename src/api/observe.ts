/**
 * Observability endpoints: `GET /events` (Docker's event stream: JSON objects,
 * one per line, kept open), `GET /metrics` (Prometheus text), and
 * `GET /berth/containers/{id}/stats` (docker-stats-like numbers from cgroups and
 * the kernel's interface counters).
 */
import { invalid } from "../errors.ts";
import type { BerthEvent, EventBus } from "../observe/events.ts";
import type { ContainerRuntime } from "../runtime/containers.ts";
import { type ApiRequest, type ApiResponse, ok, parseFilters } from "./http.ts";

function matches(e: BerthEvent, f: Record<string, string[]>): boolean {
  if (f.type && !f.type.includes(e.Type)) return false;
  if (f.event && !f.event.includes(e.Action)) return false;
  if (f.network && e.Type === "network" && !f.network.some((n) => e.Actor.ID.startsWith(n) || e.Actor.Attributes.name === n)) return false;
  if (f.container) {
    const id = e.Type === "container" ? e.Actor.ID : e.Actor.Attributes.container;
    if (!id || !f.container.some((c) => id.startsWith(c) || e.Actor.Attributes.name === c)) return false;
  }
  return true;
}

/** A stream of events: those since `since` (unix seconds) first, then live ones until `until` or disconnect. */
export function eventStream(bus: EventBus, req: ApiRequest): ReadableStream<Uint8Array> {
  const f = parseFilters(req.query.get("filters"));
  const since = req.query.get("since");
  const until = req.query.get("until");
  const num = (v: string, field: string) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw invalid("bad-time", `${field} must be a unix timestamp in seconds`, field);
    return n;
  };
  const sinceSec = since ? num(since, "since") : undefined;
  const untilSec = until ? num(until, "until") : undefined;
  const enc = new TextEncoder();
  let unsubscribe = () => {};
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream<Uint8Array>({
    start(ctl) {
      const send = (e: BerthEvent) => {
        if (matches(e, f)) ctl.enqueue(enc.encode(`${JSON.stringify(e)}\n`));
      };
      if (sinceSec !== undefined) for (const e of bus.since(sinceSec)) if (untilSec === undefined || e.time <= untilSec) send(e);
      if (untilSec !== undefined && untilSec <= Date.now() / 1000) {
        ctl.close();
        return;
      }
      unsubscribe = bus.subscribe(send);
      if (untilSec !== undefined) {
        timer = setTimeout(() => {
          unsubscribe();
          ctl.close();
        }, untilSec * 1000 - Date.now());
      }
    },
    cancel() {
      unsubscribe();
      if (timer) clearTimeout(timer);
    },
  });
}

export async function handleStats(rt: ContainerRuntime, req: ApiRequest): Promise<ApiResponse | undefined> {
  const p = req.path.split("/").filter(Boolean);
  if (req.method === "GET" && p[0] === "berth" && p[1] === "containers" && p.length === 4 && p[3] === "stats") {
    return ok(await rt.stats(decodeURIComponent(p[2]!)));
  }
  if (req.method === "GET" && p[0] === "berth" && p[1] === "stats" && p.length === 2) {
    const all = await rt.list(false);
    return ok(await Promise.all(all.map((c) => rt.stats(c.id))));
  }
  return undefined;
}
