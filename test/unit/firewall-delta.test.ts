// Incremental firewall changes (src/firewall/delta.ts): only set/map elements that changed, and
// only when nothing but elements changed; anything else must fall back to a whole replace.
import { describe, expect, test } from "bun:test";
import { elementDelta, type RenderedTable } from "../../src/firewall/delta.ts";
import { type FirewallState, renderBridgeTable, renderTable } from "../../src/firewall/ruleset.ts";
import { IP, MAC, Prefix } from "../../src/net/index.ts";

const net = { bridge: "br-a", internal: false, masquerade: [Prefix.parse("10.1.0.0/24")] };
const src = (i: number) => ({ port: `vb${i}`, mac: MAC.parse(`02:42:0a:01:00:0${i}`), addresses: [IP.parse(`10.1.0.${i}`)] });
const port = (hostPort: number, target = "10.1.0.2") => ({ hostIP: undefined, protocol: "tcp" as const, hostPort, target: IP.parse(target), targetPort: 80 });

function tables(s: FirewallState): RenderedTable[] {
  return [
    { family: "inet", name: "berth", text: renderTable(s) },
    { family: "bridge", name: "berth", text: renderBridgeTable(s) },
  ];
}

describe("elementDelta", () => {
  test("the same state needs nothing", () => {
    const s: FirewallState = { networks: [net], ports: [port(8080)], sources: [src(2)] };
    expect(elementDelta(tables(s), tables(s))).toBe("");
  });

  test("a new endpoint adds its anti-spoofing elements only", () => {
    const a: FirewallState = { networks: [net], ports: [], sources: [src(2)] };
    const b: FirewallState = { networks: [net], ports: [], sources: [src(2), src(3)] };
    const d = elementDelta(tables(a), tables(b))!;
    expect(d.split("\n").filter(Boolean).sort()).toEqual([
      'add element bridge berth macs { "vb3" . 02:42:0a:01:00:03 }',
      'add element bridge berth ports { "vb3" }',
      'add element bridge berth src4 { "vb3" . 02:42:0a:01:00:03 . 10.1.0.3 }',
    ]);
    // and removing it deletes exactly those
    expect(elementDelta(tables(b), tables(a))!.split("\n").filter(Boolean).sort()).toEqual([
      'delete element bridge berth macs { "vb3" . 02:42:0a:01:00:03 }',
      'delete element bridge berth ports { "vb3" }',
      'delete element bridge berth src4 { "vb3" . 02:42:0a:01:00:03 . 10.1.0.3 }',
    ]);
  });

  test("a map element is deleted by its key; a changed value is delete + add", () => {
    const a: FirewallState = { networks: [net], ports: [port(8080), port(9090)] };
    const b: FirewallState = { networks: [net], ports: [port(8080, "10.1.0.5")] };
    const lines = elementDelta(tables(a), tables(b))!.split("\n").filter(Boolean);
    expect(lines).toContain("delete element inet berth ports4 { 0.0.0.0/0 . tcp . 8080, 0.0.0.0/0 . tcp . 9090 }");
    expect(lines).toContain("add element inet berth ports4 { 0.0.0.0/0 . tcp . 8080 : 10.1.0.5 . 80 }");
    expect(lines.indexOf("delete element inet berth ports4 { 0.0.0.0/0 . tcp . 8080, 0.0.0.0/0 . tcp . 9090 }")).toBeLessThan(
      lines.indexOf("add element inet berth ports4 { 0.0.0.0/0 . tcp . 8080 : 10.1.0.5 . 80 }"),
    );
  });

  test("a new network changes an auto-merge set (nat4): replace whole", () => {
    const other = { bridge: "br-b", internal: false, masquerade: [Prefix.parse("10.2.0.0/24")] };
    expect(elementDelta(tables({ networks: [net], ports: [] }), tables({ networks: [net, other], ports: [] }))).toBeUndefined();
  });

  test("a different table layout (another rule) is never patched", () => {
    const a = tables({ networks: [net], ports: [] });
    const b = a.map((t, i) => (i === 0 ? { ...t, text: t.text.replace("oifname @bridges drop", "oifname @bridges accept") } : t));
    expect(b[0]!.text).not.toBe(a[0]!.text);
    expect(elementDelta(a, b)).toBeUndefined();
    expect(elementDelta(a, a.slice(0, 1))).toBeUndefined();
  });
});
