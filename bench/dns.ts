/**
 * DNS benchmark (not part of the test suite; run as root: `bun bench/dns.ts`).
 *
 * Everything runs in throwaway namespaces (the test harness's sandbox): Berth's
 * resolver serves two containers started by the runtime; a fake upstream
 * (test/fixtures/dns-upstream.ts) in an "external" namespace answers forwarded
 * names. Latency and throughput come from a load generator (bench/dns-load.ts)
 * inside a container namespace: sequential queries for p50/p99, 16 concurrent
 * loops for queries/second.
 *
 * The same load runs against Podman's aardvark-dns (Debian `aardvark-dns`,
 * /usr/lib/podman/aardvark-dns) when installed: it listens on a "gateway"
 * address in its own namespace, one veth away from the client (as with
 * Podman), and forwards to the same kind of fake upstream, given through a
 * private mount namespace's /etc/resolv.conf so it never sees the real one.
 *
 * Also measured: what one more container's resolver costs Berth (memory and
 * time to open its two sockets), by attaching it to 200 bare namespaces, and
 * the resident memory of a real berthd before and after 20 `berth run -d`.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTestBerth } from "../test/harness/berth.ts";
import { startDaemon } from "../test/harness/daemon.ts";
import { addExternalClient, cleanStale, createSandbox } from "../test/harness/sandbox.ts";
import { IP } from "../src/net/index.ts";

const AARDVARK = "/usr/lib/podman/aardvark-dns";
const LOAD = join(import.meta.dir, "dns-load.ts");
const UPSTREAM = join(import.meta.dir, "..", "test", "fixtures", "dns-upstream.ts");
const QUERY = join(import.meta.dir, "..", "test", "fixtures", "dns-query.ts");
const SEQ = Number(process.env.DNS_BENCH_SEQ ?? 3000);
const PAR = Number(process.env.DNS_BENCH_PAR ?? 20000);

interface Load {
  p50: number;
  p99: number;
  qps: number;
  errors: number;
  answered: number;
}

function sh(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
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

function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN);
}

async function waitListening(p: Bun.Subprocess<"ignore", "pipe", "inherit">): Promise<void> {
  const r = p.stdout.getReader();
  const { value } = await r.read();
  if (!new TextDecoder().decode(value).includes("listening")) throw new Error("fake upstream did not start");
  r.releaseLock();
}

/** RSS of a real berthd (sandboxed) when idle and with 20 running containers. */
async function berthdMemory(): Promise<{ idle: number; with20: number }> {
  const sb = createSandbox("bmem");
  try {
    const d = await startDaemon(sb, ["--dns-upstream", "192.0.2.2"]);
    await Bun.sleep(300);
    const idle = rssKiB(d.proc.pid);
    if (d.cli("network", "create", "--subnet", "10.231.0.0/24", "mem").code !== 0) throw new Error("network create failed");
    for (let i = 0; i < 20; i++) {
      const r = d.cli("run", "-d", "--name", `m${i}`, "--network", "mem", "--", "sleep", "600");
      if (r.code !== 0) throw new Error(`berth run failed: ${r.err}`);
    }
    await Bun.sleep(300);
    const with20 = rssKiB(d.proc.pid);
    for (let i = 0; i < 20; i++) d.cli("rm", "-f", `m${i}`);
    await d.stop();
    return { idle, with20 };
  } finally {
    await sb.cleanup();
  }
}

async function main(): Promise<void> {
  cleanStale();
  const mem = await berthdMemory();
  const b = await createTestBerth("bench", { dns: { upstreams: [{ ip: IP.parse("192.0.2.2"), port: 53 }] } });
  let aardPid: number | undefined;
  try {
    const ext = addExternalClient(b.sb);
    // aardvark's namespaces: its "host" (listening on a gateway address) and a client one veth away
    const have = existsSync(AARDVARK);
    const ah = have ? b.sb.netns("ah") : "";
    const ac = have ? b.sb.netns("ac") : "";
    if (have) {
      sh(["ip", "-n", ah, "link", "add", "gw0", "type", "veth", "peer", "name", "eth0", "netns", ac]);
      sh(["ip", "-n", ah, "addr", "add", "10.89.0.1/24", "dev", "gw0"]);
      sh(["ip", "-n", ac, "addr", "add", "10.89.0.2/24", "dev", "eth0"]);
      sh(["ip", "-n", ah, "link", "add", "up0", "type", "veth", "peer", "name", "eth1", "netns", ext.ns]);
      sh(["ip", "-n", ah, "addr", "add", "203.0.113.1/24", "dev", "up0"]);
      sh(["ip", "-n", ext.ns, "addr", "add", "203.0.113.2/24", "dev", "eth1"]);
      for (const [ns, dev] of [[ah, "gw0"], [ac, "eth0"], [ah, "up0"], [ext.ns, "eth1"]] as const) sh(["ip", "-n", ns, "link", "set", dev, "up"]);
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

    const berth = {
      localSeq: await load(client.netns, "127.0.0.11", "srv", SEQ, 1),
      localPar: await load(client.netns, "127.0.0.11", "srv", PAR, 16),
      fwdSeq: await load(client.netns, "127.0.0.11", "www.example", SEQ, 1),
      fwdPar: await load(client.netns, "127.0.0.11", "www.example", PAR, 16),
    };
    // the same, straight to the resolver's real port: what the DNAT in the container costs
    const direct = await load(client.netns, "127.0.0.11", "srv", SEQ, 1, b.rt.dns!.ports(client.id)!.udp);
    const berthRss = rssKiB(process.pid);

    // per-container resolver cost: attach to 200 bare namespaces
    Bun.gc(true);
    await Bun.sleep(100);
    const rss0 = rssKiB(process.pid);
    const nsList = Array.from({ length: 200 }, (_, i) => b.sb.netns(`m${i}`));
    const t0 = performance.now();
    for (const [i, ns] of nsList.entries()) await b.rt.dns!.attach(`bench-${i}`, ns);
    const attachMs = (performance.now() - t0) / nsList.length;
    Bun.gc(true);
    await Bun.sleep(100);
    const rss1 = rssKiB(process.pid);
    for (const i of nsList.keys()) b.rt.dns!.detach(`bench-${i}`);
    const perResolverKiB = (rss1 - rss0) / nsList.length;

    let aard: typeof berth | undefined;
    let aardRss = Number.NaN;
    if (have) {
      const dir = join(b.sb.stateDir, "aardvark");
      sh(["mkdir", "-p", dir]);
      writeFileSync(join(dir, "bench"), `10.89.0.1\n${"a".repeat(64)} 10.89.0.3  srv\n${"b".repeat(64)} 10.89.0.2  client\n`);
      const resolv = join(b.sb.stateDir, "aardvark-resolv.conf");
      writeFileSync(resolv, "nameserver 203.0.113.2\n");
      // aardvark daemonizes: the parent returns once the child serves; the child writes its pid
      sh(["nsenter", `--net=/run/netns/${ah}`, "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
        'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv, AARDVARK, "--config", dir, "-p", "53", "run"]);
      aardPid = Number(readFileSync(join(dir, "aardvark.pid"), "utf8").trim());
      // it reports ready before its sockets always answer: wait for a first reply
      for (let i = 0; i < 50; i++) {
        const probe = Bun.spawnSync(["nsenter", `--net=/run/netns/${ac}`, "--", process.execPath, QUERY, "10.89.0.1", "53", "srv", "A", "udp", "100"]);
        if (probe.exitCode === 0) break;
      }
      aard = {
        localSeq: await load(ac, "10.89.0.1", "srv", SEQ, 1),
        localPar: await load(ac, "10.89.0.1", "srv", PAR, 16),
        fwdSeq: await load(ac, "10.89.0.1", "www.example", SEQ, 1),
        fwdPar: await load(ac, "10.89.0.1", "www.example", PAR, 16),
      };
      aardRss = rssKiB(aardPid);
    }

    const rows: string[] = [];
    const ratio = (x: number, y: number | undefined) => (y === undefined || !Number.isFinite(y) || y === 0 ? "–" : (x / y).toFixed(2));
    const line = (what: string, k: keyof typeof berth, m: "p50" | "p99" | "qps", unit: string) => {
      const x = berth[k][m];
      const y = aard?.[k][m];
      rows.push(`| ${what} | ${x} ${unit} | ${y === undefined ? "–" : `${y} ${unit}`} | ${ratio(x, y)} |`);
    };
    console.log(`\n## Embedded DNS: Berth vs aardvark-dns${have ? "" : " (aardvark-dns not installed: Berth only)"}\n`);
    console.log(`${SEQ} sequential queries (latency), ${PAR} queries over 16 concurrent loops (throughput); UDP; machine: ${navigator.hardwareConcurrency} cores.\n`);
    console.log("| measure | Berth | aardvark-dns | Berth / aardvark |");
    console.log("|---|---|---|---|");
    line("local name, p50", "localSeq", "p50", "µs");
    line("local name, p99", "localSeq", "p99", "µs");
    line("local name, queries/s (16 loops)", "localPar", "qps", "q/s");
    line("forwarded name, p50", "fwdSeq", "p50", "µs");
    line("forwarded name, p99", "fwdSeq", "p99", "µs");
    line("forwarded name, queries/s (16 loops)", "fwdPar", "qps", "q/s");
    console.log(rows.join("\n"));
    const errs = Object.values(berth).reduce((a, l) => a + l.errors, 0);
    const aerrs = aard ? Object.values(aard).reduce((a, l) => a + l.errors, 0) : 0;
    console.log(`| local name p50 / p99 without the DNAT (straight to the socket's port) | ${direct.p50} / ${direct.p99} µs | | |`);
    console.log(`| unanswered queries (1 s timeout) | ${errs} | ${aard ? aerrs : "–"} | |`);
    console.log(`| resident memory of the serving process | berthd ${(mem.idle / 1024).toFixed(1)} MiB idle, ${(mem.with20 / 1024).toFixed(1)} MiB with 20 containers (bench process: ${(berthRss / 1024).toFixed(1)} MiB) | ${aard ? `${(aardRss / 1024).toFixed(1)} MiB` : "–"} | |`);
    console.log(`\nPer extra container resolver in Berth (UDP + TCP socket on 127.0.0.11 in its netns, 200 attached): ${perResolverKiB.toFixed(1)} KiB RSS, ${attachMs.toFixed(2)} ms to open.`);
    console.log("Berth's client reaches 127.0.0.11 over the container's loopback; aardvark's over a veth to the gateway address (as deployed by each).");
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
}

await main();
