// Pure rendering: iproute2 batch lines and the nftables table text.
import { describe, expect, test } from "bun:test";
import { IpBatch } from "../../src/dataplane/ipbatch.ts";
import { renderReplace, renderTable } from "../../src/firewall/ruleset.ts";
import { IP, IPNet, MAC, Prefix } from "../../src/net/index.ts";

describe("IpBatch", () => {
  test("renders typed operations as iproute2 batch lines", () => {
    const b = new IpBatch("ns1")
      .addBridge("br-x", { mtu: 1400 })
      .addVeth("vb1", "vc1", { mtu: 1400, peerNetns: "c1", peerMac: MAC.parse("02:42:0a:00:00:02") })
      .setMaster("vb1", "br-x")
      .addAddress("br-x", IPNet.parse("10.0.0.1/24"))
      .addAddress("eth0", IPNet.parse("fd00::2/64"), { noDad: true })
      .addRoute({ family: 4, via: IP.parse("10.0.0.1"), dev: "eth0" })
      .addRoute({ family: 6, via: IP.parse("fd00::1") })
      .addRoute({ dst: Prefix.parse("10.9.0.0/16"), dev: "eth0", metric: 10 });
    expect(b.lines).toEqual([
      "link add name br-x mtu 1400 type bridge stp_state 0 forward_delay 0",
      "link add name vb1 mtu 1400 type veth peer name vc1 mtu 1400 address 02:42:0a:00:00:02 netns c1",
      "link set dev vb1 master br-x",
      "address add 10.0.0.1/24 dev br-x",
      "address add fd00::2/64 nodad dev eth0",
      "route add 0.0.0.0/0 via 10.0.0.1 dev eth0",
      "route add ::/0 via fd00::1",
      "route add 10.9.0.0/16 dev eth0 metric 10",
    ]);
  });

  test("rejects interface names the kernel would refuse, before anything runs", () => {
    expect(() => new IpBatch(null).addBridge("abcdefghijklmnop")).toThrow(/at most 15/);
    expect(() => new IpBatch(null).addVeth("ok", "a/b")).toThrow();
  });
});

describe("nftables table", () => {
  const state = {
    networks: [
      { bridge: "br-a", internal: false, masquerade: [Prefix.parse("10.1.0.0/24"), Prefix.parse("fd00:1::/64")] },
      { bridge: "br-b", internal: true, masquerade: [] },
    ],
    ports: [
      { hostIP: undefined, protocol: "tcp" as const, hostPort: 8080, target: IP.parse("10.1.0.2"), targetPort: 80 },
      { hostIP: IP.parse("127.0.0.1"), protocol: "udp" as const, hostPort: 53, target: IP.parse("10.1.0.3"), targetPort: 53 },
      { hostIP: undefined, protocol: "tcp" as const, hostPort: 8080, target: IP.parse("fd00:1::2"), targetPort: 80 },
    ],
  };

  test("variable data goes into sets and maps, never into rules", () => {
    const t = renderTable(state);
    expect(t).toContain('set bridges { type ifname; elements = { "br-a", "br-b" } }');
    expect(t).toContain('elements = { "br-a" . "br-a", "br-b" . "br-b" }');
    expect(t).toContain('set internal { type ifname; elements = { "br-b" } }');
    expect(t).toContain("elements = { 10.1.0.0/24 }");
    expect(t).toContain("elements = { fd00:1::/64 }");
    expect(t).toContain("0.0.0.0/0 . tcp . 8080 : 10.1.0.2 . 80");
    expect(t).toContain("127.0.0.1 . udp . 53 : 10.1.0.3 . 53");
    expect(t).toContain("::/0 . tcp . 8080 : fd00:1::2 . 80");
    // the rules are identical whatever the state
    const rules = (s: string) => s.split("\n").filter((l) => !/^\s*(set|map) /.test(l));
    expect(rules(t)).toEqual(rules(renderTable({ networks: [], ports: [] })));
  });

  test("replace is create-then-delete-then-define, so it works with or without the table", () => {
    const s = renderReplace({ networks: [], ports: [] });
    expect(s.startsWith("add table inet berth\ndelete table inet berth\ntable inet berth {")).toBe(true);
  });
});
