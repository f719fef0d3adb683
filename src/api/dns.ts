/**
 * Embedded DNS endpoints: `GET /berth/dns/stats` (query counters and upstream
 * health) and `GET /berth/dns/names` (the name table: name, network, address).
 */
import { unavailable } from "../errors.ts";
import type { ContainerRuntime } from "../runtime/containers.ts";
import { type ApiRequest, type ApiResponse, ok } from "./http.ts";

export async function handleDns(rt: ContainerRuntime, req: ApiRequest): Promise<ApiResponse | undefined> {
  if (req.method !== "GET" || !req.path.startsWith("/berth/dns/")) return undefined;
  const what = req.path.slice("/berth/dns/".length);
  if (what !== "stats" && what !== "names") return undefined;
  const dns = rt.dns;
  if (!dns) throw unavailable("dns-disabled", "the embedded DNS resolver is not enabled in this daemon");
  if (what === "stats") return ok(dns.stats());
  return ok((await dns.names()).records());
}
