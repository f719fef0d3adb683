/** IPv6 pieces that need no kernel: gateway modes, the rendered rules, the CLI's IPv4/IPv6 flags. */
import { describe, expect, test } from "bun:test";
import { Client } from "../../src/cli/client.ts";
import { networkCommand } from "../../src/cli/commands.ts";
import { takeBoolFlags } from "../../src/cli/parse.ts";
import { parseBridgeOptions } from "../../src/drivers/bridge/options.ts";
import { BerthError } from "../../src/errors.ts";
import { renderTable } from "../../src/firewall/ruleset.ts";
import { IP, Prefix } from "../../src/net/index.ts";

const ID = "a".repeat(64);

describe("bridge gateway modes", () => {
  test("nat by default, routed per family, anything else refused with the option named", () => {
    expect(parseBridgeOptions({}, ID).gatewayMode).toEqual({ 4: "nat", 6: "nat" });
    expect(parseBridgeOptions({ "com.docker.network.bridge.gateway_mode_ipv6": "routed" }, ID).gatewayMode).toEqual({ 4: "nat", 6: "routed" });
    expect(parseBridgeOptions({ "com.docker.network.bridge.gateway_mode_ipv4": "routed" }, ID).gatewayMode).toEqual({ 4: "routed", 6: "nat" });
    let err: unknown;
    try {
      parseBridgeOptions({ "com.docker.network.bridge.gateway_mode_ipv6": "isolated" }, ID);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).field).toBe("Options.com.docker.network.bridge.gateway_mode_ipv6");
    expect((err as BerthError).message).toContain("nat, routed");
  });
});

describe("rendered IPv6 rules", () => {
  const table = renderTable({
    networks: [{ bridge: "br-r", internal: false, masquerade: [Prefix.parse("10.1.0.0/24")], routed: [Prefix.parse("fd00:1::/64")] }],
    ports: [{ hostIP: undefined, protocol: "tcp", hostPort: 8080, target: IP.parse("fd00:2::2"), targetPort: 80 }],
    open: [
      { target: IP.parse("fd00:1::2"), protocol: "tcp", port: 80 },
      { target: IP.parse("fd00:1::2"), protocol: "tcp", port: 80 },
    ],
  });

  test("routed subnets and open container ports are sets, deduplicated", () => {
    expect(table).toContain("set routed6 { type ipv6_addr; flags interval; auto-merge; elements = { fd00:1::/64 } }");
    expect(table).toContain("set open6 { type ipv6_addr . inet_proto . inet_service; elements = { fd00:1::2 . tcp . 80 } }");
    expect(table).toContain("set nat6 { type ipv6_addr; flags interval; auto-merge;  }");
    expect(table).toContain("oifname @bridges meta l4proto { tcp, udp, sctp } ip6 daddr . meta l4proto . th dport @open6 accept");
    expect(table).toContain("oifname @bridges ip6 daddr @routed6 icmpv6 type echo-request accept");
  });

  test("open ports come after the isolation drops and before the final drop", () => {
    const forward = table.slice(table.indexOf("chain forward"));
    const at = (s: string) => forward.indexOf(s);
    expect(at("iifname @bridges oifname @bridges drop")).toBeLessThan(at("@open6 accept"));
    expect(at("oifname @internal drop")).toBeLessThan(at("@open6 accept"));
    expect(at("@routed6 icmpv6")).toBeLessThan(forward.lastIndexOf("oifname @bridges drop"));
    expect(forward.lastIndexOf("oifname @bridges drop")).toBeGreaterThan(at("iifname @bridges oifname @bridges drop"));
  });

  test("[::1] is never DNATed by the kernel (the userland forwarder serves it)", () => {
    const dnat6 = table.split("\n").filter((l) => l.includes("map @ports6"));
    expect(dnat6).toHaveLength(2);
    for (const l of dnat6) expect(l).toContain("ip6 daddr != ::1");
  });

  test("a state without the optional IPv6 fields renders empty sets", () => {
    const t = renderTable({ networks: [], ports: [] });
    expect(t).toContain("set routed6 { type ipv6_addr; flags interval; auto-merge;  }");
    expect(t).toContain("set open4 { type ipv4_addr . inet_proto . inet_service;  }");
  });
});

describe("CLI: --ipv4 / --ipv6", () => {
  test("takeBoolFlags: bare, =true/false/1/0, other flags untouched, bad values refused", () => {
    expect(takeBoolFlags(["--ipv6", "--ipv4=false", "-d", "bridge", "--internal", "n"], ["ipv4", "ipv6"])).toEqual({
      rest: ["-d", "bridge", "--internal", "n"],
      flags: { ipv6: true, ipv4: false },
    });
    expect(takeBoolFlags(["--ipv6=0", "--ipv4=1"], ["ipv4", "ipv6"]).flags).toEqual({ ipv6: false, ipv4: true });
    expect(() => takeBoolFlags(["--ipv4=no"], ["ipv4"])).toThrow("--ipv4=\"no\": the value must be true or false");
  });

  class Recorder extends Client {
    bodies: unknown[] = [];
    constructor() {
      super("/nonexistent");
    }
    override async call<T = unknown>(_method: string, _path: string, body?: unknown): Promise<T> {
      this.bodies.push(body);
      return { Id: "x" } as T;
    }
  }

  test("network create --ipv4=false --ipv6 sends Docker's EnableIPv4=false", async () => {
    const c = new Recorder();
    await networkCommand(c, ["create", "--ipv4=false", "--ipv6", "v6only"], () => {});
    await networkCommand(c, ["create", "--ipv6", "--subnet", "fd00:9::/64", "dual"], () => {});
    await networkCommand(c, ["create", "plain"], () => {});
    expect(c.bodies.map((b) => { const o = b as Record<string, unknown>; return [o.Name, o.EnableIPv4, o.EnableIPv6]; })).toEqual([
      ["v6only", false, true],
      ["dual", undefined, true],
      ["plain", undefined, false],
    ]);
  });
});
