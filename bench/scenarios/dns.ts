/**
 * Embedded DNS: Berth's resolver against Podman's aardvark-dns (Debian
 * `aardvark-dns`) on the same load (was bench/dns.ts).
 *
 * Berth's resolver serves two containers started by the runtime; a fake upstream
 * (test/fixtures/dns-upstream.ts) in an "external" namespace answers forwarded
 * names. The load generator (bench/lib/dns-load.ts) runs inside a container
 * namespace: sequential queries for p50/p99, 16 concurrent loops for queries/s.
 * aardvark-dns listens on a "gateway" address in its own namespace, one veth away
 * from its client (as with Podman), and forwards to the same kind of fake
 * upstream, given through a private mount namespace's /etc/resolv.conf so it
 * never sees the real one. Also: what one more container's resolver costs Berth
 * (memory, time to open its sockets).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IP } from "../../src/net/index.ts";
import { createTestBerth } from "../../test/harness/berth.ts";
import { addExternalClient } from "../../test/harness/sandbox.ts";
import { must, rssKiB } from "../lib/proc.ts";
import { fmt, ratio } from "../lib/stats.ts";
import { type BenchOptions, emptySection, type Scenario, type Section } from "../lib/types.ts";

const AARDVARK = "/usr/lib/podman/aardvark-dns";
const LOAD = join(import.meta.dir, "..", "lib", "dns-load.ts");
const UPSTREAM = join(import.meta.dir, "..", "..", "test", "fixtures", "dns-upstream.ts");
const QUERY = join(import.meta.dir, "..", "..", "test", "fixtures", "dns-query.ts");

interface Load {
  p50: number;
  p99: number;
  qps: number;
  errors: number;
  answered: number;
}

async function load(ns: string, server: string, name: string, count: number, conc: number, port = 53): Promise<Load> {
  const p = Bun.spawn(["nsenter", `--net=/run/netns/${ns}`, "--", process.execPath, LOAD, server, String(port), name, "A", String(count), String(conc)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`load generator failed: ${err}`);
  return JSON.parse(out) as Load;
}

async function waitListening(p: Bun.Subprocess<"ignore", "pipe", "inherit">): Promise<void> {
  const r = p.stdout.getReader();
  const { value } = await r.read();
  if (!new TextDecoder().decode(value).includes("listening")) throw new Error("fake upstream did not start");
  r.releaseLock();
}

type LoadSet = { localSeq: Load; localPar: Load; fwdSeq: Load; fwdPar: Load };

async function loadSet(ns: string, server: string, seq: number, par: number): Promise<LoadSet> {
  return {
    localSeq: await load(ns, server, "srv", seq, 1),
    localPar: await load(ns, server, "srv", par, 16),
    fwdSeq: await load(ns, server, "www.example", seq, 1),
    fwdPar: await load(ns, server, "www.example", par, 16),
  };
}

export const dnsScenario: Scenario = {
  id: "dns",
  title: "Embedded DNS: Berth vs aardvark-dns",
  async run(o: BenchOptions): Promise<Section> {
    const seq = o.dnsQueries;
    const par = o.quick ? 500 : 20000;
    const perResolverN = o.quick ? 10 : 200;
    const sec = emptySection(
      "dns",
      this.title,
      `${seq} sequential UDP queries (latency) and ${par} over 16 concurrent loops (throughput), from inside a container namespace; local names (a container on the same network) and forwarded names (a fake upstream in an external namespace). Berth's client reaches 127.0.0.11 over the container's loopback (DNAT to the resolver's socket), aardvark's over a veth to the gateway address, as each is deployed.`,
    );
    const b = await createTestBerth("bdns", { dns: { upstreams: [{ ip: IP.parse("192.0.2.2"), port: 53 }] } });
    let aardPid: number | undefined;
    try {
      const ext = addExternalClient(b.sb);
      const have = existsSync(AARDVARK);
      const ah = have ? b.sb.netns("ah") : "";
      const ac = have ? b.sb.netns("ac") : "";
      if (have) {
        must(["ip", "-n", ah, "link", "add", "gw0", "type", "veth", "peer", "name", "eth0", "netns", ac]);
        must(["ip", "-n", ah, "addr", "add", "10.89.0.1/24", "dev", "gw0"]);
        must(["ip", "-n", ac, "addr", "add", "10.89.0.2/24", "dev", "eth0"]);
        must(["ip", "-n", ah, "link", "add", "up0", "type", "veth", "peer", "name", "eth1", "netns", ext.ns]);
        must(["ip", "-n", ah, "addr", "add", "203.0.113.1/24", "dev", "up0"]);
        must(["ip", "-n", ext.ns, "addr", "add", "203.0.113.2/24", "dev", "eth1"]);
        for (const [ns, dev] of [[ah, "gw0"], [ac, "eth0"], [ah, "up0"], [ext.ns, "eth1"]] as const) must(["ip", "-n", ns, "link", "set", dev, "up"]);
      }
      const up = Bun.spawn(
        ["nsenter", `--net=/run/netns/${ext.ns}`, "--", process.execPath, UPSTREAM, "192.0.2.2:53:answer:198.51.100.2", ...(have ? ["203.0.113.2:53:answer:198.51.100.2"] : [])],
        { stdout: "pipe", stderr: "inherit" },
      );
      b.sb.track(up);
      await waitListening(up);

      await b.ctl.ensurePredefined();
      await b.ctl.createNetwork({ name: "bench", ipam: { config: [{ subnet: "10.230.0.0/24" }] } });
      await b.rt.run({ name: "srv", command: ["sleep", "3600"], networks: [{ network: "bench" }] });
      const client = await b.rt.run({ name: "client", command: ["sleep", "3600"], networks: [{ network: "bench" }] });
      const berth = await loadSet(client.netns, "127.0.0.11", seq, par);
      // straight to the resolver's real port: what the DNAT in the container costs
      const direct = await load(client.netns, "127.0.0.11", "srv", seq, 1, b.rt.dns!.ports(client.id)!.udp);

      // per-container resolver cost: attach to bare namespaces
      Bun.gc(true);
      await Bun.sleep(100);
      const rss0 = rssKiB(process.pid);
      const nsList = Array.from({ length: perResolverN }, (_, i) => b.sb.netns(`m${i}`));
      const t0 = performance.now();
      for (const [i, ns] of nsList.entries()) await b.rt.dns!.attach(`bench-${i}`, ns);
      const attachMs = (performance.now() - t0) / nsList.length;
      Bun.gc(true);
      await Bun.sleep(100);
      const perResolverKiB = (rssKiB(process.pid) - rss0) / nsList.length;
      for (const i of nsList.keys()) b.rt.dns!.detach(`bench-${i}`);

      let aard: LoadSet | undefined;
      let aardRss = Number.NaN;
      if (have) {
        const dir = join(b.sb.stateDir, "aardvark");
        must(["mkdir", "-p", dir]);
        writeFileSync(join(dir, "bench"), `10.89.0.1\n${"a".repeat(64)} 10.89.0.3  srv\n${"b".repeat(64)} 10.89.0.2  client\n`);
        const resolv = join(b.sb.stateDir, "aardvark-resolv.conf");
        writeFileSync(resolv, "nameserver 203.0.113.2\n");
        // aardvark daemonizes: the parent returns once the child serves; the child writes its pid
        must(["nsenter", `--net=/run/netns/${ah}`, "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
          'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv, AARDVARK, "--config", dir, "-p", "53", "run"]);
        aardPid = Number(readFileSync(join(dir, "aardvark.pid"), "utf8").trim());
        // it reports ready before its sockets always answer: wait for a first reply
        for (let i = 0; i < 50; i++) {
          const probe = Bun.spawnSync(["nsenter", `--net=/run/netns/${ac}`, "--", process.execPath, QUERY, "10.89.0.1", "53", "srv", "A", "udp", "100"]);
          if (probe.exitCode === 0) break;
        }
        aard = await loadSet(ac, "10.89.0.1", seq, par);
        aardRss = rssKiB(aardPid);
      }

      const rows: (string | number)[][] = [];
      const line = (what: string, k: keyof LoadSet, m: "p50" | "p99" | "qps", unit: string) => {
        const x = berth[k][m];
        const y = aard?.[k][m];
        rows.push([what, `${x} ${unit}`, y === undefined ? "–" : `${y} ${unit}`, ratio(x, y)]);
      };
      line("local name, p50", "localSeq", "p50", "µs");
      line("local name, p99", "localSeq", "p99", "µs");
      line("local name, queries/s (16 loops)", "localPar", "qps", "q/s");
      line("forwarded name, p50", "fwdSeq", "p50", "µs");
      line("forwarded name, p99", "fwdSeq", "p99", "µs");
      line("forwarded name, queries/s (16 loops)", "fwdPar", "qps", "q/s");
      const errs = Object.values(berth).reduce((a, l) => a + l.errors, 0);
      const aerrs = aard ? Object.values(aard).reduce((a, l) => a + l.errors, 0) : undefined;
      rows.push(["local name p50 / p99 without the DNAT (straight to the socket's port)", `${direct.p50} / ${direct.p99} µs`, "", ""]);
      rows.push(["unanswered queries (1 s timeout)", errs, aerrs ?? "–", ""]);
      rows.push(["resident memory of the serving process (MiB)", `bench process ${fmt(rssKiB(process.pid) / 1024)} (in-process Berth)`, aard ? fmt(aardRss / 1024) : "–", ""]);
      sec.tables.push({ title: `Berth vs aardvark-dns${have ? "" : " (aardvark-dns not installed: Berth only)"}`, head: ["measure", "Berth", "aardvark-dns", "Berth ÷ aardvark"], rows });
      sec.charts.push({
        name: "dns",
        title: "DNS latency (p50, µs)",
        unit: "µs",
        groups: [
          { label: "local name", bars: [{ series: "Berth", value: berth.localSeq.p50 }, { series: "aardvark-dns", value: aard?.localSeq.p50 ?? Number.NaN }] },
          { label: "forwarded name", bars: [{ series: "Berth", value: berth.fwdSeq.p50 }, { series: "aardvark-dns", value: aard?.fwdSeq.p50 ?? Number.NaN }] },
        ],
      });
      sec.notes.push(`Per extra container resolver in Berth (UDP + TCP socket on 127.0.0.11 in its netns, ${perResolverN} attached): ${fmt(perResolverKiB)} KiB RSS, ${fmt(attachMs, 2)} ms to open.`);
      sec.raw = { berth, aard, direct, perResolverKiB, attachMs, aardRss };
      return sec;
    } finally {
      if (aardPid) {
        try {
          process.kill(aardPid, "SIGKILL");
        } catch {
          /* gone */
        }
      }
      await b.close();
    }
  },
};
