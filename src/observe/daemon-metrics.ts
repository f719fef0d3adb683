/**
 * berthd's Prometheus metrics. Counters are bumped where things happen (API
 * requests, repairs); gauges about networks, IPAM and endpoint traffic are read
 * from the store and the kernel at scrape time, never estimated.
 */
import type { Controller } from "../controller/controller.ts";
import type { Reconciler } from "../controller/reconcile.ts";
import { Registry } from "./metrics.ts";

export interface DaemonMetrics {
  registry: Registry;
  observeRequest(method: string, route: string, status: number, seconds: number): void;
}

/** Collapses ids and names in a path so label cardinality stays bounded. */
export function routeLabel(path: string): string {
  const p = path.split("/").filter(Boolean);
  if (p[0] === "networks" && p.length >= 2 && !["create", "prune"].includes(p[1]!)) p[1] = "{id}";
  if (p[0] === "berth" && p[1] === "containers" && p.length >= 3 && p[2] !== "run") p[2] = "{id}";
  return `/${p.join("/")}`;
}

export function daemonMetrics(ctl: Controller, reconciler: Reconciler, extra?: (r: Registry) => void): DaemonMetrics {
  const r = new Registry();
  const requests = r.histogram("berth_api_request_duration_seconds", "API request latency by method, route and status class");
  const endpoints = r.gauge("berth_network_endpoints", "Endpoints attached to each network");
  const ipamSize = r.gauge("berth_ipam_pool_size", "Usable addresses per pool");
  const ipamAllocated = r.gauge("berth_ipam_pool_allocated", "Addresses handed out per pool");
  const ipamUtil = r.gauge("berth_ipam_pool_utilisation_ratio", "Allocated plus reserved over usable addresses per pool");
  const traffic = {
    rxBytes: r.gauge("berth_endpoint_receive_bytes_total", "Bytes received by the container interface (kernel counter)"),
    txBytes: r.gauge("berth_endpoint_transmit_bytes_total", "Bytes sent by the container interface (kernel counter)"),
    rxPackets: r.gauge("berth_endpoint_receive_packets_total", "Packets received by the container interface"),
    txPackets: r.gauge("berth_endpoint_transmit_packets_total", "Packets sent by the container interface"),
    rxDropped: r.gauge("berth_endpoint_receive_dropped_total", "Received packets dropped"),
    txDropped: r.gauge("berth_endpoint_transmit_dropped_total", "Sent packets dropped"),
  };
  const repairs = r.gauge("berth_reconcile_repairs_total", "Drift repairs by result");
  extra?.(r);

  r.beforeScrape(async () => {
    const nets = await ctl.store.networks.list();
    const epRows: [Record<string, string>, number][] = [];
    const size: [Record<string, string>, number][] = [];
    const alloc: [Record<string, string>, number][] = [];
    const util: [Record<string, string>, number][] = [];
    const hostLinks = new Map((await ctl.dp.linkStats(ctl.dp.hostNs)).map((l) => [l.name, l]));
    const rows: Record<keyof typeof traffic, [Record<string, string>, number][]> = {
      rxBytes: [], txBytes: [], rxPackets: [], txPackets: [], rxDropped: [], txDropped: [],
    };
    for (const n of nets) {
      const eps = await ctl.store.endpoints.listByNetwork(n.id);
      epRows.push([{ network: n.name, driver: n.driver }, eps.length]);
      if (n.ipam.pools.length > 0) {
        for (const u of await ctl.ipam.utilisation(n.id)) {
          const l = { network: n.name, subnet: u.subnet.toString() };
          size.push([l, Number(u.size)]);
          alloc.push([l, u.allocated]);
          util.push([l, Number(u.size) > 0 ? (u.allocated + u.reserved) / Number(u.size) : 0]);
        }
      }
      for (const ep of eps) {
        const host = (ep.driverState as { hostIfname?: string }).hostIfname;
        const s = host ? hostLinks.get(host) : undefined;
        if (!s) continue;
        const l = { network: n.name, container: ep.containerId.slice(0, 12), ifname: ep.ifname };
        // the host end of a veth sees the container's traffic mirrored: its rx is the container's tx
        rows.rxBytes.push([l, s.txBytes]);
        rows.txBytes.push([l, s.rxBytes]);
        rows.rxPackets.push([l, s.txPackets]);
        rows.txPackets.push([l, s.rxPackets]);
        rows.rxDropped.push([l, s.txDropped]);
        rows.txDropped.push([l, s.rxDropped]);
      }
    }
    endpoints.collect(() => epRows);
    ipamSize.collect(() => size);
    ipamAllocated.collect(() => alloc);
    ipamUtil.collect(() => util);
    for (const k of Object.keys(traffic) as (keyof typeof traffic)[]) traffic[k].collect(() => rows[k]);
    const ok = reconciler.history.filter((x) => x.result === "repaired").length;
    repairs.collect(() => [
      [{ result: "repaired" }, ok],
      [{ result: "failed" }, reconciler.history.length - ok],
    ]);
  });

  return {
    registry: r,
    observeRequest(method, route, status, seconds) {
      requests.observe({ method, route: routeLabel(route), code: `${Math.floor(status / 100)}xx` }, seconds);
    },
  };
}
