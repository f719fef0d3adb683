// The topology graph model the web UI draws (ui/graph-model.ts): pure data, no browser.
import { describe, expect, test } from "bun:test";
import { buildGraph, ctrNodeId, DRIVER_COLOURS, netNodeId } from "../../ui/graph-model.ts";
import type { ContainerJson, NetworkJson, Topology } from "../../ui/types.ts";

function net(id: string, name: string, driver: string, subnet?: string, endpoints: NetworkJson["Containers"] = {}): NetworkJson {
  return {
    Name: name,
    Id: id,
    Created: "",
    Scope: "local",
    Driver: driver,
    EnableIPv6: false,
    Internal: name === "back",
    Attachable: false,
    IPAM: { Driver: "default", Options: {}, Config: subnet ? [{ Subnet: subnet }] : [] },
    Containers: endpoints,
    Options: {},
    Labels: {},
    IPAMUtilisation: [],
  };
}

function ctr(id: string, name: string, nets: { net: string; ep: string; ifname: string; addr: string; ports?: ContainerJson["Networks"][number]["Ports"] }[]): ContainerJson {
  return {
    Id: id,
    Name: name,
    Command: ["sleep", "1"],
    State: "running",
    ExitCode: null,
    Pid: 1,
    Created: "",
    NetnsName: `ns-${id}`,
    Limits: {},
    Labels: {},
    Networks: nets.map((n) => ({ NetworkID: n.net, EndpointID: n.ep, Ifname: n.ifname, MacAddress: "", Addresses: [n.addr], Gateways: [], Ports: n.ports ?? [], Aliases: [] })),
  };
}

const topo: Topology = {
  Host: { Name: "h1", Netns: "" },
  Networks: [
    net("n1", "front", "bridge", "10.1.0.0/24"),
    net("n2", "back", "bridge", "10.2.0.0/24"),
    net("n3", "lan", "macvlan", "192.168.1.0/24", { dockerctr: { Name: "", EndpointID: "e9", MacAddress: "", IPv4Address: "192.168.1.9/24", IPv6Address: "" } }),
  ],
  Containers: [
    ctr("c1", "web", [
      { net: "n1", ep: "e1", ifname: "eth0", addr: "10.1.0.2/24", ports: [{ HostIp: "", HostPort: 8080, ContainerPort: 80, Protocol: "tcp" }] },
      { net: "n2", ep: "e2", ifname: "eth1", addr: "10.2.0.2/24" },
    ]),
    ctr("c2", "db", [{ net: "n2", ep: "e3", ifname: "eth0", addr: "10.2.0.3/24" }]),
    ctr("c3", "lonely", []),
  ],
};

describe("topology graph model", () => {
  const g = buildGraph(topo);
  const node = (id: string) => g.nodes.find((n) => n.data.id === id);

  test("networks sit in the host box, coloured by driver, internal ones marked", () => {
    expect(node(netNodeId("n1"))!.data).toMatchObject({ parent: "host", colour: DRIVER_COLOURS.bridge, label: "front\n10.1.0.0/24" });
    expect(node(netNodeId("n3"))!.data.colour).toBe(DRIVER_COLOURS.macvlan);
    expect(node(netNodeId("n2"))!.data.internal).toBe(true);
  });

  test("every endpoint is an interface in its container's box, joined to its network", () => {
    const ifs = g.nodes.filter((n) => n.data.kind === "interface" && n.data.parent === ctrNodeId("c1"));
    expect(ifs.map((n) => n.data.label)).toEqual(["eth0\n10.1.0.2", "eth1\n10.2.0.2"]);
    const targets = ifs.map((i) => g.edges.find((e) => e.data.source === i.data.id)!.data.target);
    expect(targets).toEqual([netNodeId("n1"), netNodeId("n2")]);
    expect(g.nodes.filter((n) => n.data.kind === "port").map((n) => n.data.label)).toEqual([":8080 → 80/tcp"]);
    // every edge ends at a node that exists
    for (const e of g.edges) {
      expect(node(e.data.source)).toBeDefined();
      expect(node(e.data.target)).toBeDefined();
    }
  });

  test("endpoints of containers Berth does not run show as external containers", () => {
    const ext = node(ctrNodeId("dockerctr"))!;
    expect(ext.data.label).toBe("dockerctr (external)");
    expect(g.nodes.some((n) => n.data.parent === ext.data.id && n.data.label === "192.168.1.9")).toBe(true);
  });

  test("container boxes never overlap: children of different containers are far apart", () => {
    const byBox = new Map<string, number[]>();
    for (const n of g.nodes) {
      if (n.data.kind !== "interface" && n.data.kind !== "port") continue;
      byBox.set(n.data.parent!, [...(byBox.get(n.data.parent!) ?? []), n.position.x]);
    }
    const spans = [...byBox.values()].map((xs) => [Math.min(...xs), Math.max(...xs)] as const).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0] - spans[i - 1]![1]).toBeGreaterThanOrEqual(150);
    // a container without networks is still drawn, with finite coordinates
    const lonely = node(ctrNodeId("c3"))!;
    expect(Number.isFinite(lonely.position.x)).toBe(true);
  });
});
