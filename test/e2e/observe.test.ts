// Observability end to end: events, Prometheus metrics (parsed by a real parser) and stats from the kernel.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import parsePrometheus from "parse-prometheus-text-format";
import { join } from "node:path";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { assertRootUntouched, createSandbox, type Sandbox } from "../harness/sandbox.ts";
import { cni, ok } from "../netns/cni-util.ts";

assertRootUntouched();

describe("events, metrics, stats", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  const get = async (path: string) => fetch(`http://berth${path}`, { unix: d.socket });
  const since = Math.floor(Date.now() / 1000) - 1;

  beforeAll(async () => {
    sb = createSandbox("obs");
    d = await startDaemon(sb);
    expect(d.cli("network", "create", "--subnet", "10.253.0.0/24", "obsnet").code).toBe(0);
    expect(d.cli("run", "-d", "--network", "obsnet", "--name", "o1", "--memory", "48m", "--pids", "40", "sleep", "120").code).toBe(0);
    expect(d.cli("run", "-d", "--network", "obsnet", "--name", "o2", "sleep", "120").code).toBe(0);
  });
  afterAll(async () => {
    d.cli("rm", "-f", "o1", "o2");
    await d.stop();
    await sb.cleanup();
  });



  test("the event stream replays what happened (Docker's event shape) and delivers new events live", async () => {
    const res = await get(`/events?since=${since}&filters=${encodeURIComponent(JSON.stringify({ type: ["network", "container"] }))}`);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = "";
    const events: { Type: string; Action: string; Actor: { Attributes: Record<string, string> } }[] = [];
    const readUntil = async (pred: () => boolean) => {
      const deadline = Date.now() + 5000;
      while (!pred() && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value);
        let i = buf.indexOf("\n");
        while (i >= 0) {
          events.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
          i = buf.indexOf("\n");
        }
      }
    };
    await readUntil(() => events.filter((e) => e.Action === "start").length >= 2);
    const seq = events.map((e) => `${e.Type}:${e.Action}`);
    expect(seq).toContain("network:create");
    expect(seq.filter((s) => s === "network:connect").length).toBeGreaterThanOrEqual(2);
    expect(seq.filter((s) => s === "container:start").length).toBe(2);
    expect(events.some((e) => e.Action === "create" && e.Actor.Attributes.name === "obsnet")).toBe(true);
    // live: a disconnect + destroy while the stream is open
    expect(d.cli("run", "-d", "--network", "obsnet", "--name", "o3", "sleep", "60").code).toBe(0);
    expect(d.cli("rm", "-f", "o3").code).toBe(0);
    await readUntil(() => events.some((e) => e.Action === "destroy" && e.Actor.Attributes.name === "o3"));
    expect(events.some((e) => e.Action === "disconnect")).toBe(true);
    expect(events.some((e) => e.Action === "destroy" && e.Actor.Attributes.name === "o3")).toBe(true);
    await reader.cancel();
  });

  test("stats and /metrics count a known amount of traffic, read from the kernel", async () => {
    const [o2] = JSON.parse(d.cli("inspect", "o2").out);
    const o2ip = (o2.Networks[0].Addresses[0] as string).split("/")[0]!;
    const statsOf = async (n: string) =>
      (await (await get(`/berth/containers/${n}/stats`)).json()) as {
        cgroup: { memoryBytes: number; memoryLimit: number; pids: number; pidsLimit: number };
        networks: { name: string; rxBytes: number; rxPackets: number }[];
      };
    const before = (await statsOf("o2")).networks.find((n) => n.name === "eth0")!;
    // 20 echo requests of 1000 payload bytes: 20 × (1000 + 8 ICMP + 20 IP + 14 Ethernet) bytes reach o2's eth0
    const ping = d.cli("exec", "o1", "--", "ping", "-c", "20", "-i", "0.05", "-s", "1000", "-q", o2ip);
    expect(ping.code).toBe(0);
    const after = await statsOf("o2");
    const eth0 = after.networks.find((n) => n.name === "eth0")!;
    expect(eth0.rxPackets - before.rxPackets).toBeGreaterThanOrEqual(20);
    expect(eth0.rxBytes - before.rxBytes).toBeGreaterThanOrEqual(20 * 1042);
    expect(eth0.rxBytes - before.rxBytes).toBeLessThan(20 * 1042 + 2000); // nothing else much
    const o1 = await statsOf("o1");
    expect(o1.cgroup.memoryLimit).toBe(48 * 1024 * 1024);
    expect(o1.cgroup.pidsLimit).toBe(40);
    expect(o1.cgroup.pids).toBeGreaterThanOrEqual(1);
    expect(o1.cgroup.memoryBytes).toBeGreaterThan(0);

    const text = await (await get("/metrics")).text();
    const fams = parsePrometheus(text);
    const fam = (n: string) => fams.find((f) => f.name === n)!;
    const rx = fam("berth_endpoint_receive_bytes_total").metrics.find((m) => m.labels?.container === o2.Id.slice(0, 12))!;
    expect(Number(rx.value)).toBeGreaterThanOrEqual(eth0.rxBytes); // read later, counters only grow
    const eps = fam("berth_network_endpoints").metrics.find((m) => m.labels?.network === "obsnet")!;
    expect(Number(eps.value)).toBe(2);
    const alloc = fam("berth_ipam_pool_allocated").metrics.find((m) => m.labels?.network === "obsnet")!;
    expect(Number(alloc.value)).toBe(2);
    const lat = fam("berth_api_request_duration_seconds");
    expect(lat.type).toBe("HISTOGRAM");
    // the parser folds labelled histogram series into one (it validated every line's syntax above), so read the
    // per-route count from the exposition text itself
    const runCount = /^berth_api_request_duration_seconds_count\{code="2xx",method="POST",route="\/berth\/containers\/run"\} (\d+)$/m.exec(text);
    expect(Number(runCount?.[1])).toBeGreaterThanOrEqual(2);
    expect(fam("berth_reconcile_repairs_total").type).toBe("GAUGE");
  });

  test("/metrics counts CNI plugin operations (count, latency, error code) from the plugins' operation log", async () => {
    const env = { BERTH_CNI_OPLOG: join(sb.stateDir, "cni-ops.log") };
    const conf = { cniVersion: "1.1.0", name: "oplog", type: "loopback" };
    for (let i = 0; i < 3; i++) ok(cni({ plugin: "loopback", host: sb.host, command: "VERSION", conf, env }));
    ok(cni({ plugin: "loopback", host: sb.host, command: "DEL", containerId: "c1", ifname: "lo", conf, env }));
    const bad = cni({ plugin: "loopback", host: sb.host, command: "ADD", containerId: "c1", netns: "/nonexistent", ifname: "lo", conf, env });
    expect(bad.code).not.toBe(0);
    const code = String(bad.json.code);
    const text = await (await get("/metrics")).text();
    parsePrometheus(text); // well-formed
    const line = (re: RegExp) => Number(re.exec(text)?.[1]);
    expect(line(/^berth_cni_operations_total\{plugin="loopback",result="ok",verb="VERSION"\} (\d+)$/m)).toBe(3);
    expect(line(/^berth_cni_operations_total\{plugin="loopback",result="ok",verb="DEL"\} (\d+)$/m)).toBe(1);
    expect(line(new RegExp(`^berth_cni_operations_total\\{plugin="loopback",result="${code}",verb="ADD"\\} (\\d+)$`, "m"))).toBe(1);
    expect(line(new RegExp(`^berth_cni_operation_errors_total\\{code="${code}",plugin="loopback",verb="ADD"\\} (\\d+)$`, "m"))).toBe(1);
    expect(line(/^berth_cni_operation_duration_seconds_count\{plugin="loopback",verb="VERSION"\} (\d+)$/m)).toBe(3);
    // read incrementally: a later operation adds to the totals, nothing is counted twice
    ok(cni({ plugin: "loopback", host: sb.host, command: "VERSION", conf, env }));
    const again = await (await get("/metrics")).text();
    expect(Number(/^berth_cni_operations_total\{plugin="loopback",result="ok",verb="VERSION"\} (\d+)$/m.exec(again)?.[1])).toBe(4);
  });

  test("berth stats --no-stream prints a line per running container with CPU, memory and limits", () => {
    const r = d.cli("stats", "--no-stream", "--interval", "0.3");
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines[0]).toContain("CPU %");
    const o1 = lines.find((l) => l.includes(" o1 "))!;
    expect(o1).toContain("/ 48.00MiB");
    expect(o1).toMatch(/\d+ \/ 40/);
  });

  test("berthd logs JSON lines with level, operation and container id", async () => {
    d.cli("rm", "-f", "nosuch-container"); // a failing request is logged too
    d.cli("rm", "-f", "o1", "o2");
    await d.stop();
    const lines = d.logs().split("\n").filter((l) => l.startsWith("{"));
    const logs = lines.map((l) => JSON.parse(l) as { level: string; msg: string; op?: string; containerId?: string; status?: number });
    expect(logs.length).toBeGreaterThan(5);
    for (const l of logs) {
      expect(["debug", "info", "warn", "error"]).toContain(l.level);
      expect(typeof l.op).toBe("string");
    }
    expect(logs.some((l) => l.op === "DELETE /berth/containers/{id}" && l.containerId === "o1" && l.status === 204)).toBe(true);
    expect(logs.some((l) => l.containerId === "nosuch-container" && l.level === "warn" && l.status === 404)).toBe(true);
    d = await startDaemon(sb);
  });
});
