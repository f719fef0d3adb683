/**
 * Read-only views the web UI needs, as pure handlers like the rest of the API
 * (the CLI and curl can use them too):
 *
 *  - `GET /berth/topology`: the host, every network (Docker's JSON with its
 *    endpoints and IPAM utilisation) and every container, in one snapshot;
 *  - `GET /berth/firewall`: Berth's nftables table as it renders it (sets and
 *    maps with their elements, chains with their rules, the nft text) and what the
 *    kernel holds of it (present, element count per set);
 *  - `GET /berth/containers/{id}/interfaces`: the interfaces, addresses and
 *    routes inside a container's network namespace, read from the kernel.
 */
import { hostname } from "node:os";
import type { Controller } from "../controller/controller.ts";
import { describeTable } from "../firewall/describe.ts";
import { TABLE_FAMILY, TABLE_NAME } from "../firewall/ruleset.ts";
import type { ContainerRuntime } from "../runtime/containers.ts";
import { containerJson } from "./containers.ts";
import { type ApiRequest, type ApiResponse, type Json, ok } from "./http.ts";
import { networkJson } from "./networks.ts";

export async function topologyJson(ctl: Controller, rt: ContainerRuntime): Promise<Json> {
  const nets = await ctl.listNetworks();
  return {
    Host: { Name: hostname(), Netns: ctl.dp.hostNs ?? "" },
    Networks: await Promise.all(nets.map((n) => networkJson(ctl, n, true))),
    Containers: (await rt.list(true)).map(containerJson),
  };
}

export async function firewallJson(ctl: Controller): Promise<Json> {
  const view = describeTable(await ctl.firewallState());
  const kernel = await ctl.dp.nftListTable(ctl.dp.hostNs, TABLE_FAMILY, TABLE_NAME);
  const counts: Record<string, number> = {};
  let rules = 0;
  for (const o of kernel?.nftables ?? []) {
    const s = (o.set ?? o.map) as { name?: string; elem?: unknown[] } | undefined;
    if (s?.name !== undefined) counts[s.name] = s.elem?.length ?? 0;
    if (o.rule !== undefined) rules++;
  }
  return {
    Family: view.family,
    Name: view.name,
    Comment: view.comment,
    Sets: view.sets.map((s) => ({ Name: s.name, Kind: s.kind, Type: s.type, Flags: s.flags, Elements: s.elements })),
    Chains: view.chains.map((c) => ({ Name: c.name, Base: c.base, Rules: c.rules })),
    Text: view.text,
    Kernel: { Present: kernel !== undefined, Rules: rules, Elements: counts },
  };
}

export async function containerInterfacesJson(ctl: Controller, rt: ContainerRuntime, ref: string): Promise<Json> {
  const c = await rt.inspect(ref);
  // "" = the host's own namespace (host network): show the host namespace Berth works in
  const ns = c.netns === "" ? ctl.dp.hostNs : c.netns;
  if (ns !== null && !ctl.dp.netnsExists(ns)) return { Id: c.id, Name: c.name, Netns: c.netns, Interfaces: [], Routes: [] };
  const [links, addrs, r4, r6] = await Promise.all([ctl.dp.links(ns), ctl.dp.addresses(ns), ctl.dp.routes(ns, 4), ctl.dp.routes(ns, 6)]);
  return {
    Id: c.id,
    Name: c.name,
    Netns: c.netns,
    Interfaces: links.map((l) => ({
      Name: l.name,
      Kind: l.kind ?? "",
      Mtu: l.mtu,
      MacAddress: l.mac?.toString() ?? "",
      Up: l.up,
      OperState: l.operstate,
      Addresses: addrs.filter((a) => a.dev === l.name).map((a) => ({ Address: a.addr.toString(), Scope: a.scope })),
    })),
    Routes: [...r4, ...r6].map((r) => ({ Family: r.family, Destination: r.dst, Gateway: r.gateway?.toString() ?? "", Device: r.dev ?? "" })),
  };
}

export async function handleViews(ctl: Controller, rt: ContainerRuntime, req: ApiRequest): Promise<ApiResponse | undefined> {
  if (req.method !== "GET") return undefined;
  const p = req.path.split("/").filter(Boolean);
  if (p[0] !== "berth") return undefined;
  if (p.length === 2 && p[1] === "topology") return ok(await topologyJson(ctl, rt));
  if (p.length === 2 && p[1] === "firewall") return ok(await firewallJson(ctl));
  if (p.length === 4 && p[1] === "containers" && p[3] === "interfaces") return ok(await containerInterfacesJson(ctl, rt, decodeURIComponent(p[2]!)));
  return undefined;
}
