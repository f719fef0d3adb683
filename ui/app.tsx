/** @jsxImportSource preact */
/** The web UI: topology on the left, networks / containers / firewall / trace / events on the right, live. */
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, api, followEvents, type LiveState } from "./api.ts";
import { ContainerDetails, NetworkDetails } from "./details.tsx";
import { FirewallPanel } from "./firewall.tsx";
import { CreateNetworkForm, ErrorLine, message } from "./forms.tsx";
import { DRIVER_COLOURS, driverColour, OTHER_COLOUR } from "./graph-model.ts";
import { type Selection, TopologyGraph } from "./topology.tsx";
import { TracePanel } from "./trace.tsx";
import type { BerthEvent, DnsName, Topology } from "./types.ts";

type Tab = "networks" | "containers" | "firewall" | "trace" | "events";
const TABS: Tab[] = ["networks", "containers", "firewall", "trace", "events"];

export function App() {
  const [topology, setTopology] = useState<Topology | undefined>();
  const [version, setVersion] = useState(0);
  const [dns, setDns] = useState<DnsName[]>([]);
  const [live, setLive] = useState<LiveState>("connecting");
  const [events, setEvents] = useState<(BerthEvent & { seq: number })[]>([]);
  const seq = useRef(0);
  const [selection, setSelection] = useState<Selection | undefined>();
  const [tab, setTab] = useState<Tab>("networks");
  const [loadError, setLoadError] = useState<string | undefined>();
  const [unauthorized, setUnauthorized] = useState(false);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const reload = useCallback(async () => {
    try {
      const t = await api<Topology>("GET", "/berth/topology");
      const names = await api<DnsName[]>("GET", "/berth/dns/names").catch(() => [] as DnsName[]);
      setTopology(t);
      setDns(names);
      setVersion((v) => v + 1);
      setLoadError(undefined);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setUnauthorized(true);
      setLoadError(message(e));
    }
  }, []);
  const schedule = useCallback(() => {
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => void reload(), 120);
  }, [reload]);

  useEffect(() => {
    void reload();
    return followEvents(
      (e) => {
        seq.current += 1;
        const item = { ...e, seq: seq.current };
        setEvents((prev) => [item, ...prev].slice(0, 100));
        schedule();
      },
      (s) => {
        setLive(s);
        if (s === "live") schedule(); // catch up with whatever happened while disconnected
      },
    );
  }, [reload, schedule]);

  const select = (s: Selection | undefined) => {
    setSelection(s);
    if (s) setTab(s.kind === "network" ? "networks" : "containers");
  };

  if (unauthorized) {
    return (
      <main class="unauthorized" data-testid="unauthorized">
        <h1>Berth</h1>
        <p>This UI needs its token. Open the address berthd printed at start (…/?token=…), or read the token from ui-token in berthd's state directory.</p>
      </main>
    );
  }

  const networks = topology?.Networks ?? [];
  const containers = topology?.Containers ?? [];
  const selNet = selection?.kind === "network" ? networks.find((n) => n.Id === selection.id) : undefined;
  const selCtr = selection?.kind === "container" ? containers.find((c) => c.Id === selection.id) : undefined;

  return (
    <div class="app">
      <header>
        <h1>Berth</h1>
        <span class="muted">{topology ? `host ${topology.Host.Name}${topology.Host.Netns ? ` · netns ${topology.Host.Netns}` : ""}` : "loading…"}</span>
        <span class="muted">
          {networks.length} networks · {containers.length} containers
        </span>
        <span class={`live live-${live}`} data-testid="live" data-state={live}>
          {live === "live" ? "● live" : live === "connecting" ? "○ connecting" : "○ reconnecting"}
        </span>
      </header>
      <ErrorLine error={loadError} testid="load-error" />
      <div class="main">
        <div class="left">
          <TopologyGraph topology={topology} selected={selection} onSelect={select} />
          <div class="legend">
            {Object.entries(DRIVER_COLOURS).map(([d, c]) => (
              <span key={d}>
                <i style={{ background: c }} /> {d}
              </span>
            ))}
            <span>
              <i style={{ background: OTHER_COLOUR }} /> other
            </span>
            <span>
              <i class="dashed" /> internal
            </span>
            <span>
              <i class="port" /> published port
            </span>
          </div>
        </div>
        <aside class="right">
          <div class="tabs" role="tablist">
            {TABS.map((t) => (
              <button type="button" role="tab" aria-selected={tab === t} class={tab === t ? "tab active" : "tab"} key={t} onClick={() => setTab(t)} data-testid={`tab-${t}`}>
                {t}
              </button>
            ))}
          </div>
          {tab === "networks" && (
            <>
              <ul class="pick" data-testid="network-list">
                {networks.map((n) => (
                  <li key={n.Id}>
                    <button type="button" class={selNet?.Id === n.Id ? "pick-item active" : "pick-item"} onClick={() => select({ kind: "network", id: n.Id })} data-testid={`network-${n.Name}`}>
                      <i style={{ background: driverColour(n.Driver) }} /> {n.Name}
                      <span class="muted"> {n.IPAM.Config.map((c) => c.Subnet).join(" ")}</span>
                    </button>
                  </li>
                ))}
              </ul>
              {selNet && topology && <NetworkDetails network={selNet} topology={topology} dns={dns} onRemoved={() => setSelection(undefined)} />}
              <CreateNetworkForm onDone={() => schedule()} />
            </>
          )}
          {tab === "containers" && (
            <>
              {containers.length === 0 && <p class="muted">No containers. Start one with berth run.</p>}
              <ul class="pick" data-testid="container-list">
                {containers.map((c) => (
                  <li key={c.Id}>
                    <button type="button" class={selCtr?.Id === c.Id ? "pick-item active" : "pick-item"} onClick={() => select({ kind: "container", id: c.Id })} data-testid={`container-${c.Name}`}>
                      <span class={`dot state-${c.State}`} /> {c.Name}
                      <span class="muted"> {c.State}</span>
                    </button>
                  </li>
                ))}
              </ul>
              {selCtr && topology && <ContainerDetails container={selCtr} topology={topology} version={version} />}
            </>
          )}
          {tab === "firewall" && <FirewallPanel version={version} />}
          {tab === "trace" && <TracePanel topology={topology} />}
          {tab === "events" && (
            <section class="card" data-testid="events">
              <h3>Events</h3>
              {events.length === 0 && <p class="muted">nothing yet: events appear here as they happen</p>}
              <ul class="events">
                {events.map((e) => (
                  <li key={e.seq}>
                    <span class="mono muted">{new Date(e.time * 1000).toLocaleTimeString()}</span> {e.Type} <b>{e.Action}</b> {e.Actor.Attributes.name ?? e.Actor.ID.slice(0, 12)}
                    {e.Actor.Attributes.container ? ` (${e.Actor.Attributes.container.slice(0, 12)})` : ""}
                  </li>
                ))}
              </ul>
            </section>
          )}
        </aside>
      </div>
    </div>
  );
}
