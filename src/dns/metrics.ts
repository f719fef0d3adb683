/** Prometheus counters of the embedded resolver, for berthd's /metrics. */
import type { Registry } from "../observe/metrics.ts";
import type { DnsService } from "./server.ts";
import type { DnsCounters } from "./stats.ts";

export function registerDnsMetrics(r: Registry, dns: DnsService): void {
  const c = r.counter("berth_dns_queries_total", "Queries received by the embedded resolver, by outcome (all = every query)");
  const up = r.gauge("berth_dns_upstream_healthy", "1 when the upstream answered the last forward, 0 while it is tried last after a failure");
  const keys: (keyof DnsCounters)[] = ["queries", "answeredLocally", "forwarded", "forwardFailures", "nxdomain", "servfail", "formerr", "refused", "dropped"];
  const label: Record<string, string> = { queries: "all", answeredLocally: "local", forwarded: "forwarded", forwardFailures: "forward_failed" };
  let last: DnsCounters | undefined;
  r.beforeScrape(async () => {
    const now = dns.counters.snapshot();
    for (const k of keys) c.inc({ outcome: label[k] ?? k }, now[k] - (last?.[k] ?? 0));
    last = now;
    for (const u of dns.stats().upstreams) up.set({ upstream: u.address }, u.healthy ? 1 : 0);
  });
}
