/**
 * Turns a topology snapshot into graph elements with fixed positions (no DOM:
 * unit-tested): the host is a box holding its networks (one row, coloured by
 * driver); each container is a box below holding its interfaces (one node per
 * endpoint, labelled with name and address, joined to its network) and its
 * published ports. Containers sit under the networks they use, in that order.
 * Endpoints of containers Berth does not run (dockerd's, through the plugin)
 * appear as "external" containers.
 */
import type { ContainerJson, Topology } from "./types.ts";

export const DRIVER_COLOURS: Record<string, string> = {
  bridge: "#2563eb",
  macvlan: "#d97706",
  ipvlan: "#7c3aed",
  host: "#64748b",
  null: "#111827",
};
export const OTHER_COLOUR = "#059669";

export function driverColour(driver: string): string {
  return DRIVER_COLOURS[driver] ?? OTHER_COLOUR;
}

export type NodeKind = "host" | "network" | "container" | "interface" | "port";

export interface NodeData {
  id: string;
  label: string;
  kind: NodeKind;
  parent?: string;
  /** network id or container id this node stands for (interfaces and ports: their container). */
  ref: string;
  colour?: string;
  state?: string;
  internal?: boolean;
}

export interface GraphNode {
  group: "nodes";
  data: NodeData;
  position: { x: number; y: number };
}

export interface GraphEdge {
  group: "edges";
  data: { id: string; source: string; target: string; colour: string; kind: "attachment" };
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

const NET_GAP = 190;
const NET_Y = 0;
const IF_Y = 230;
const PORT_Y = 290;
const CHILD_GAP = 120;
// between the last interface of one container and the first of the next: room for both boxes' padding and labels
const BOX_GAP = 170;

export const hostId = "host";
export const netNodeId = (id: string): string => `net:${id}`;
export const ctrNodeId = (id: string): string => `ctr:${id}`;

interface Box {
  id: string;
  label: string;
  state: string;
  external: boolean;
  ifaces: { id: string; label: string; netId: string }[];
  ports: { id: string; label: string }[];
  want: number;
}

function firstAddress(addrs: string[], family: 4 | 6): string | undefined {
  return addrs.find((a) => a.includes(":") === (family === 6));
}

function shortId(id: string): string {
  return id.slice(0, 12);
}

export function buildGraph(t: Topology): Graph {
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const hostLabel = t.Host.Netns ? `host ${t.Host.Name} (netns ${t.Host.Netns})` : `host ${t.Host.Name}`;
  nodes.push({ group: "nodes", data: { id: hostId, label: hostLabel, kind: "host", ref: "" }, position: { x: 0, y: NET_Y } });
  const netX = new Map<string, number>();
  const colourOf = new Map<string, string>();
  t.Networks.forEach((n, i) => {
    const x = i * NET_GAP;
    netX.set(n.Id, x);
    colourOf.set(n.Id, driverColour(n.Driver));
    const subnets = n.IPAM.Config.map((c) => c.Subnet).join(" ");
    nodes.push({
      group: "nodes",
      data: { id: netNodeId(n.Id), label: subnets ? `${n.Name}\n${subnets}` : n.Name, kind: "network", parent: hostId, ref: n.Id, colour: driverColour(n.Driver), internal: n.Internal },
      position: { x, y: NET_Y },
    });
  });

  const boxes: Box[] = [];
  const known = new Set(t.Containers.map((c) => c.Id));
  const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
  for (const c of t.Containers) boxes.push(containerBox(c, netX));
  // endpoints of containers Berth did not start (e.g. dockerd's through the plugin)
  const external = new Map<string, Box>();
  for (const n of t.Networks) {
    for (const [cid, ep] of Object.entries(n.Containers)) {
      if (known.has(cid)) continue;
      let b = external.get(cid);
      if (!b) {
        b = { id: ctrNodeId(cid), label: `${ep.Name || shortId(cid)} (external)`, state: "external", external: true, ifaces: [], ports: [], want: 0 };
        external.set(cid, b);
      }
      const addr = (ep.IPv4Address || ep.IPv6Address).split("/")[0] ?? "";
      b.ifaces.push({ id: `if:${ep.EndpointID}`, label: addr, netId: n.Id });
    }
  }
  for (const b of external.values()) {
    b.want = mean(b.ifaces.map((i) => netX.get(i.netId) ?? 0));
    boxes.push(b);
  }
  boxes.sort((a, b) => a.want - b.want || a.label.localeCompare(b.label));

  // place boxes left to right near the networks they use, never overlapping
  let right = Number.NEGATIVE_INFINITY;
  for (const b of boxes) {
    const width = Math.max(1, b.ifaces.length, b.ports.length) * CHILD_GAP;
    const left = Math.max(b.want - (width - CHILD_GAP) / 2, right + BOX_GAP);
    right = left + width - CHILD_GAP;
    const ref = b.id.slice(4);
    nodes.push({ group: "nodes", data: { id: b.id, label: b.label, kind: "container", ref, state: b.state }, position: { x: left, y: IF_Y } });
    b.ifaces.forEach((f, i) => {
      nodes.push({ group: "nodes", data: { id: f.id, label: f.label, kind: "interface", parent: b.id, ref }, position: { x: left + i * CHILD_GAP, y: IF_Y } });
      edges.push({ group: "edges", data: { id: `e:${f.id}`, source: f.id, target: netNodeId(f.netId), colour: colourOf.get(f.netId) ?? OTHER_COLOUR, kind: "attachment" } });
    });
    b.ports.forEach((p, i) => {
      nodes.push({ group: "nodes", data: { id: p.id, label: p.label, kind: "port", parent: b.id, ref }, position: { x: left + i * CHILD_GAP, y: PORT_Y } });
    });
  }
  return { nodes, edges };
}

function containerBox(c: ContainerJson, netX: Map<string, number>): Box {
  const ifaces: Box["ifaces"] = [];
  const ports: Box["ports"] = [];
  for (const a of c.Networks) {
    if (!netX.has(a.NetworkID)) continue;
    const addr = (firstAddress(a.Addresses, 4) ?? firstAddress(a.Addresses, 6) ?? "").split("/")[0] ?? "";
    ifaces.push({ id: `if:${a.EndpointID}`, label: addr ? `${a.Ifname}\n${addr}` : a.Ifname, netId: a.NetworkID });
    for (const p of a.Ports) {
      const host = p.HostIp ? `${p.HostIp}:` : ":";
      ports.push({ id: `port:${a.EndpointID}:${p.HostIp}:${p.HostPort}/${p.Protocol}`, label: `${host}${p.HostPort} → ${p.ContainerPort}/${p.Protocol}` });
    }
  }
  // interfaces in the order of their networks, so edges do not cross inside a box
  ifaces.sort((a, b) => (netX.get(a.netId) ?? 0) - (netX.get(b.netId) ?? 0));
  const xs = ifaces.map((i) => netX.get(i.netId) ?? 0);
  return {
    id: ctrNodeId(c.Id),
    label: c.Name,
    state: c.State,
    external: false,
    ifaces,
    ports,
    // no network: after the last one
    want: xs.length === 0 ? netX.size * NET_GAP : xs.reduce((a, b) => a + b, 0) / xs.length,
  };
}
