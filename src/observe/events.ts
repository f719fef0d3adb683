/**
 * The event feed: network create/remove, connect/disconnect, container
 * start/die/remove, repairs. Events use Docker's shape (Type, Action, Actor,
 * time, timeNano) so `docker events` and `berth events` read the same stream;
 * the web UI uses it too. Subscribers get events as they happen; a bounded
 * history serves `since`.
 */
export type EventType = "network" | "container" | "daemon";

export interface BerthEvent {
  Type: EventType;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: "local";
  time: number;
  timeNano: number;
}

export type Listener = (e: BerthEvent) => void;

export class EventBus {
  private readonly listeners = new Set<Listener>();
  private readonly history: BerthEvent[] = [];
  private readonly limit: number;

  constructor(limit = 1000) {
    this.limit = limit;
  }

  emit(type: EventType, action: string, id: string, attributes: Record<string, string> = {}): BerthEvent {
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const e: BerthEvent = {
      Type: type,
      Action: action,
      Actor: { ID: id, Attributes: attributes },
      scope: "local",
      time: Number(nowNs / 1_000_000_000n),
      timeNano: Number(nowNs),
    };
    this.history.push(e);
    if (this.history.length > this.limit) this.history.shift();
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        /* a broken subscriber must not break the emitter */
      }
    }
    return e;
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Events at or after `sinceSec` (unix seconds). */
  since(sinceSec: number): BerthEvent[] {
    return this.history.filter((e) => e.time >= sinceSec);
  }
}
