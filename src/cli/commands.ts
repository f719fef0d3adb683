/**
 * `berth` commands with docker CLI habits. Each command is a client of berthd's
 * API; `exec` enters the container's namespace and cgroup directly (root only).
 */
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { invalid } from "../errors.ts";
import type { Client } from "./client.ts";
import { inCgroupArgv } from "../dataplane/cgroup.ts";
import { parseRate } from "../runtime/bandwidth.ts";
import { parseKeyValues, parseNumber, parseSize, takeBoolFlags } from "./parse.ts";

type Json = Record<string, unknown>;
export type Out = (line: string) => void;

export interface NetworkJson {
  Name: string;
  Id: string;
  Driver: string;
  Scope: string;
  Internal: boolean;
  EnableIPv6: boolean;
  IPAM: { Config: { Subnet: string; Gateway?: string }[] };
  Containers: Record<string, { Name: string; IPv4Address: string; MacAddress: string }>;
  Labels: Record<string, string>;
}

export interface ContainerJson {
  Id: string;
  Name: string;
  Command: string[];
  State: string;
  ExitCode: number | null;
  Pid: number | null;
  NetnsName: string;
  NetnsPath: string;
  CgroupProcs: string[];
  ResolvConfPath?: string;
  Networks: { NetworkID: string; Ifname: string; Addresses: string[]; Ports: { HostIp: string; HostPort: number; ContainerPort: number; Protocol: string }[] }[];
}

function table(rows: string[][], out: Out): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join("").trimEnd());
}

/** Splits argv of run/exec at the command: "--" or the first positional. */
export function splitCommand(argv: string[], valueFlags: ReadonlySet<string>): [string[], string[]] {
  const dd = argv.indexOf("--");
  if (dd >= 0) return [argv.slice(0, dd), argv.slice(dd + 1)];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("-")) return [argv.slice(0, i), argv.slice(i)];
    if (valueFlags.has(a)) i++;
  }
  return [argv, []];
}

// ---------------- network ----------------

export async function networkCommand(c: Client, argv: string[], out: Out): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "create":
      return networkCreate(c, rest, out);
    case "ls":
    case "list":
      return networkLs(c, rest, out);
    case "inspect":
      return networkInspect(c, rest, out);
    case "rm":
    case "remove":
      return networkRm(c, rest, out);
    case "prune":
      return networkPrune(c, rest, out);
    case "connect":
    case "disconnect":
      return networkConnect(c, sub, rest, out);
    default:
      throw invalid("usage", `usage: berth network create|ls|inspect|rm|prune|connect|disconnect (got ${sub ?? "nothing"})`);
  }
}

async function networkCreate(c: Client, argv: string[], out: Out): Promise<number> {
  // --ipv4=false (IPv6-only) and --ipv6[=bool], as docker network create takes them
  const { rest, flags } = takeBoolFlags(argv, ["ipv4", "ipv6"]);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      driver: { type: "string", short: "d" },
      subnet: { type: "string", multiple: true },
      "ip-range": { type: "string", multiple: true },
      gateway: { type: "string", multiple: true },
      "aux-address": { type: "string", multiple: true },
      internal: { type: "boolean" },
      label: { type: "string", multiple: true },
      opt: { type: "string", short: "o", multiple: true },
      attachable: { type: "boolean" },
    },
  });
  if (positionals.length !== 1) throw invalid("usage", "usage: berth network create [OPTIONS] NAME", "name");
  const subnets = values.subnet ?? [];
  const ranges = values["ip-range"] ?? [];
  const gateways = values.gateway ?? [];
  if (ranges.length > subnets.length || gateways.length > subnets.length) {
    throw invalid("usage", "--ip-range and --gateway need a --subnet each", "subnet");
  }
  const aux = parseKeyValues(values["aux-address"], "aux-address");
  const config = subnets.map((s, i) => ({
    Subnet: s,
    ...(ranges[i] ? { IPRange: ranges[i] } : {}),
    ...(gateways[i] ? { Gateway: gateways[i] } : {}),
    ...(i === 0 && Object.keys(aux).length > 0 ? { AuxiliaryAddresses: aux } : {}),
  }));
  const r = await c.call<{ Id: string }>("POST", "/networks/create", {
    Name: positionals[0],
    Driver: values.driver ?? "bridge",
    Internal: values.internal ?? false,
    EnableIPv6: flags.ipv6 ?? false,
    ...(flags.ipv4 === false ? { EnableIPv4: false } : {}),
    Attachable: values.attachable ?? false,
    Labels: parseKeyValues(values.label, "label"),
    Options: parseKeyValues(values.opt, "opt"),
    IPAM: { Driver: "default", Config: config },
  });
  out(r.Id);
  return 0;
}

async function networkLs(c: Client, argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { filter: { type: "string", short: "f", multiple: true }, quiet: { type: "boolean", short: "q" }, format: { type: "string" } },
  });
  const filters: Record<string, string[]> = {};
  for (const f of values.filter ?? []) {
    const i = f.indexOf("=");
    if (i <= 0) throw invalid("bad-filter", `bad filter ${JSON.stringify(f)}: use key=value`, "filter");
    const key = f.slice(0, i);
    filters[key] = [...(filters[key] ?? []), f.slice(i + 1)];
  }
  const q = Object.keys(filters).length > 0 ? `?filters=${encodeURIComponent(JSON.stringify(filters))}` : "";
  const nets = await c.call<NetworkJson[]>("GET", `/networks${q}`);
  if (values.quiet) {
    for (const n of nets) out(n.Id.slice(0, 12));
  } else if (values.format === "json") {
    for (const n of nets) out(JSON.stringify(n));
  } else {
    table(
      [["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"], ...nets.map((n) => [n.Id.slice(0, 12), n.Name, n.Driver, n.Scope, n.IPAM.Config.map((p) => p.Subnet).join(",")])],
      out,
    );
  }
  return 0;
}

async function networkInspect(c: Client, argv: string[], out: Out): Promise<number> {
  if (argv.length === 0) throw invalid("usage", "usage: berth network inspect NETWORK...", "network");
  const res: unknown[] = [];
  for (const n of argv) res.push(await c.call("GET", `/networks/${encodeURIComponent(n)}`));
  out(JSON.stringify(res, null, 2));
  return 0;
}

async function networkRm(c: Client, argv: string[], out: Out): Promise<number> {
  if (argv.length === 0) throw invalid("usage", "usage: berth network rm NETWORK...", "network");
  let rc = 0;
  for (const n of argv) {
    try {
      await c.call("DELETE", `/networks/${encodeURIComponent(n)}`);
      out(n);
    } catch (e) {
      console.error(`Error: ${(e as Error).message}`);
      rc = 1;
    }
  }
  return rc;
}

async function networkPrune(c: Client, _argv: string[], out: Out): Promise<number> {
  const r = await c.call<{ NetworksDeleted: string[] }>("POST", "/networks/prune");
  if (r.NetworksDeleted.length > 0) {
    out("Deleted Networks:");
    for (const n of r.NetworksDeleted) out(n);
  }
  return 0;
}

async function networkConnect(c: Client, verb: "connect" | "disconnect", argv: string[], _out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ip: { type: "string" }, ip6: { type: "string" }, alias: { type: "string", multiple: true }, force: { type: "boolean", short: "f" } },
  });
  if (positionals.length !== 2) throw invalid("usage", `usage: berth network ${verb} NETWORK CONTAINER`);
  const [net, ctr] = positionals as [string, string];
  const body: Json =
    verb === "connect"
      ? {
          Container: ctr,
          EndpointConfig: {
            Aliases: values.alias ?? [],
            IPAMConfig: { ...(values.ip ? { IPv4Address: values.ip } : {}), ...(values.ip6 ? { IPv6Address: values.ip6 } : {}) },
          },
        }
      : { Container: ctr, Force: values.force ?? false };
  await c.call("POST", `/networks/${encodeURIComponent(net)}/${verb}`, body);
  return 0;
}

// ---------------- containers ----------------

const RUN_VALUE_FLAGS = new Set([
  "--network", "--net", "--name", "-p", "--publish", "--memory", "-m", "--cpus", "--pids", "--ip", "--ip6", "--alias", "--label", "-l",
  "--ingress-rate", "--egress-rate", "--device-read-bps", "--device-write-bps", "--device-read-iops", "--device-write-iops",
]);

export async function runCommand(c: Client, argv: string[], out: Out): Promise<number> {
  const [opts, command] = splitCommand(argv, RUN_VALUE_FLAGS);
  const { values } = parseArgs({
    args: opts,
    options: {
      network: { type: "string", multiple: true },
      net: { type: "string", multiple: true },
      name: { type: "string" },
      publish: { type: "string", short: "p", multiple: true },
      memory: { type: "string", short: "m" },
      cpus: { type: "string" },
      pids: { type: "string" },
      ip: { type: "string" },
      ip6: { type: "string" },
      alias: { type: "string", multiple: true },
      label: { type: "string", short: "l", multiple: true },
      detach: { type: "boolean", short: "d" },
      rm: { type: "boolean" },
      "ingress-rate": { type: "string" },
      "egress-rate": { type: "string" },
      "device-read-bps": { type: "string", multiple: true },
      "device-write-bps": { type: "string", multiple: true },
      "device-read-iops": { type: "string", multiple: true },
      "device-write-iops": { type: "string", multiple: true },
    },
  });
  if (command.length === 0) throw invalid("usage", "usage: berth run [OPTIONS] [--] COMMAND [ARG...]", "command");
  const networks = [...(values.network ?? []), ...(values.net ?? [])];
  const nets = (networks.length > 0 ? networks : ["bridge"]).map((n, i) => ({
    Network: n,
    ...(i === 0 ? { Ports: values.publish ?? [] } : {}),
    ...(i === 0 && values.ip ? { IPv4Address: values.ip } : {}),
    ...(i === 0 && values.ip6 ? { IPv6Address: values.ip6 } : {}),
    ...(i === 0 && values.alias ? { Aliases: values.alias } : {}),
  }));
  const ctr = await c.call<ContainerJson>("POST", "/berth/containers/run", {
    Command: command,
    Networks: nets,
    ...(values.name ? { Name: values.name } : {}),
    ...(values.memory ? { Memory: parseSize(values.memory, "memory") } : {}),
    ...(values.cpus ? { Cpus: parseNumber(values.cpus, "cpus") } : {}),
    ...(values.pids ? { Pids: parseNumber(values.pids, "pids") } : {}),
    ...(values["ingress-rate"] ? { IngressRate: parseRate(values["ingress-rate"], "ingress-rate") } : {}),
    ...(values["egress-rate"] ? { EgressRate: parseRate(values["egress-rate"], "egress-rate") } : {}),
    ...deviceLimits("BlkioDeviceReadBps", values["device-read-bps"], "device-read-bps", true),
    ...deviceLimits("BlkioDeviceWriteBps", values["device-write-bps"], "device-write-bps", true),
    ...deviceLimits("BlkioDeviceReadIOps", values["device-read-iops"], "device-read-iops", false),
    ...deviceLimits("BlkioDeviceWriteIOps", values["device-write-iops"], "device-write-iops", false),
    Labels: parseKeyValues(values.label, "label"),
  });
  if (values.detach) {
    out(ctr.Id);
    return 0;
  }
  const { StatusCode } = await c.call<{ StatusCode: number }>("POST", `/berth/containers/${ctr.Id}/wait`);
  const logs = await c.call<string>("GET", `/berth/containers/${ctr.Id}/logs`);
  if (logs) process.stdout.write(logs);
  if (values.rm) await c.call("DELETE", `/berth/containers/${ctr.Id}?force=1`);
  return StatusCode;
}

/** `--device-write-bps /dev/vda:4mb` (sizes with units for bytes, plain numbers for operations), Docker's habit. */
function deviceLimits(api: string, items: string[] | undefined, flag: string, bytes: boolean): Record<string, { Path: string; Rate: number }[]> {
  if (!items || items.length === 0) return {};
  return {
    [api]: items.map((it) => {
      const i = it.lastIndexOf(":");
      if (i <= 0) throw invalid("bad-device-limit", `--${flag} ${JSON.stringify(it)} must look like DEVICE:RATE (e.g. /dev/vda:4mb)`, flag);
      const rate = it.slice(i + 1);
      return { Path: it.slice(0, i), Rate: bytes ? parseSize(rate, flag) : parseNumber(rate, flag) };
    }),
  };
}

export async function psCommand(c: Client, argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { all: { type: "boolean", short: "a" }, quiet: { type: "boolean", short: "q" } } });
  const list = await c.call<ContainerJson[]>("GET", `/berth/containers?all=${values.all ? 1 : 0}`);
  if (values.quiet) {
    for (const x of list) out(x.Id.slice(0, 12));
    return 0;
  }
  const rows = [["CONTAINER ID", "NAME", "STATUS", "NETWORKS", "ADDRESSES", "PORTS", "COMMAND"]];
  const nets = new Map((await c.call<NetworkJson[]>("GET", "/networks")).map((n) => [n.Id, n.Name]));
  for (const x of list) {
    rows.push([
      x.Id.slice(0, 12),
      x.Name,
      x.State === "exited" ? `exited (${x.ExitCode ?? "?"})` : x.State,
      x.Networks.map((n) => nets.get(n.NetworkID) ?? n.NetworkID.slice(0, 12)).join(",") || "-",
      x.Networks.flatMap((n) => n.Addresses).join(",") || "-",
      x.Networks.flatMap((n) => n.Ports.map((p) => `${p.HostIp || "0.0.0.0"}:${p.HostPort}->${p.ContainerPort}/${p.Protocol}`)).join(",") || "-",
      x.Command.join(" "),
    ]);
  }
  table(rows, out);
  return 0;
}

export async function rmCommand(c: Client, argv: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { force: { type: "boolean", short: "f" } } });
  if (positionals.length === 0) throw invalid("usage", "usage: berth rm [-f] CONTAINER...", "container");
  let rc = 0;
  for (const p of positionals) {
    try {
      await c.call("DELETE", `/berth/containers/${encodeURIComponent(p)}${values.force ? "?force=1" : ""}`);
      out(p);
    } catch (e) {
      console.error(`Error: ${(e as Error).message}`);
      rc = 1;
    }
  }
  return rc;
}

export async function logsCommand(c: Client, argv: string[]): Promise<number> {
  if (argv.length !== 1) throw invalid("usage", "usage: berth logs CONTAINER", "container");
  process.stdout.write(await c.call<string>("GET", `/berth/containers/${encodeURIComponent(argv[0]!)}/logs`));
  return 0;
}

export async function inspectCommand(c: Client, argv: string[], out: Out): Promise<number> {
  if (argv.length === 0) throw invalid("usage", "usage: berth inspect CONTAINER...", "container");
  const res: unknown[] = [];
  for (const n of argv) res.push(await c.call("GET", `/berth/containers/${encodeURIComponent(n)}`));
  out(JSON.stringify(res, null, 2));
  return 0;
}

/** Runs a command inside a running container: same netns, same cgroup. */
export async function execCommand(c: Client, argv: string[]): Promise<number> {
  const [opts, command] = splitCommand(argv, new Set());
  const ctrName = opts.find((a) => !a.startsWith("-")) ?? command.shift();
  if (!ctrName || command.length === 0) throw invalid("usage", "usage: berth exec CONTAINER [--] COMMAND [ARG...]", "command");
  const ctr = await c.call<ContainerJson>("GET", `/berth/containers/${encodeURIComponent(ctrName)}`);
  if (ctr.State !== "running") throw invalid("not-running", `container ${ctr.Name} is not running`, "container");
  // the container's mount namespace too when it has one (its own /etc/resolv.conf for the embedded DNS)
  const mnt = ctr.ResolvConfPath && ctr.Pid && existsSync(`/proc/${ctr.Pid}/ns/mnt`) ? [`--mount=/proc/${ctr.Pid}/ns/mnt`, `--wd=${process.cwd()}`] : [];
  const ns = ctr.NetnsPath || mnt.length > 0 ? ["nsenter", ...(ctr.NetnsPath ? [`--net=${ctr.NetnsPath}`] : []), ...mnt, "--"] : [];
  const p = Bun.spawn(inCgroupArgv(ctr.CgroupProcs, [...ns, ...command]), {
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  });
  return await p.exited;
}

/** `berth trace SRC DST PORT[/proto]`: why a connection is allowed or dropped. */
export async function traceCommand(c: Client, argv: string[], out: Out): Promise<number> {
  if (argv.length !== 3) throw invalid("usage", "usage: berth trace SRC DST PORT[/tcp|udp|sctp]");
  const [src, dst, portSpec] = argv as [string, string, string];
  const [port, proto = "tcp"] = portSpec.split("/");
  const q = new URLSearchParams({ src, dst, port: port ?? "", proto });
  const r = await c.call<{ verdict: string; reason: string; steps: { at: string; note: string }[] }>("GET", `/berth/trace?${q}`);
  for (const s of r.steps) out(`  ${s.at.padEnd(24)} ${s.note}`);
  out(`${r.verdict.toUpperCase()}: ${r.reason}`);
  return r.verdict === "allowed" ? 0 : 3;
}

interface StatsJson {
  id: string;
  name: string;
  read: string;
  cgroup?: { cpuNanos: number; memoryBytes: number; memoryLimit?: number; pids: number; pidsLimit?: number; blockReadBytes: number; blockWriteBytes: number };
  networks: { name: string; rxBytes: number; txBytes: number; rxPackets: number; txPackets: number; rxDropped: number; txDropped: number }[];
}

const human = (n: number): string => {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(2)}${u[i]}`;
};

/** `berth stats [--no-stream] [CONTAINER...]`: CPU %, memory, pids, block I/O, network per container. */
export async function statsCommand(c: Client, argv: string[], out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { "no-stream": { type: "boolean" }, format: { type: "string" }, interval: { type: "string" } },
  });
  const interval = values.interval ? parseNumber(values.interval, "interval") * 1000 : 1000;
  const sample = async (): Promise<StatsJson[]> =>
    positionals.length > 0
      ? Promise.all(positionals.map((p) => c.call<StatsJson>("GET", `/berth/containers/${encodeURIComponent(p)}/stats`)))
      : c.call<StatsJson[]>("GET", "/berth/stats");
  let prev = new Map((await sample()).map((s) => [s.id, s]));
  for (;;) {
    await Bun.sleep(interval);
    const cur = await sample();
    const rows = [["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS", "NET I/O (rx / tx)", "NET PKTS", "NET DROPS", "BLOCK I/O"]];
    const json: unknown[] = [];
    for (const s of cur) {
      const p = prev.get(s.id);
      const wall = p ? (Date.parse(s.read) - Date.parse(p.read)) * 1e6 : 0;
      const cpu = p?.cgroup && s.cgroup && wall > 0 ? ((s.cgroup.cpuNanos - p.cgroup.cpuNanos) / wall) * 100 : 0;
      const net = s.networks.reduce(
        (a, n) => ({ rx: a.rx + n.rxBytes, tx: a.tx + n.txBytes, rp: a.rp + n.rxPackets, tp: a.tp + n.txPackets, d: a.d + n.rxDropped + n.txDropped }),
        { rx: 0, tx: 0, rp: 0, tp: 0, d: 0 },
      );
      const g = s.cgroup;
      json.push({ ...s, cpuPercent: Number(cpu.toFixed(2)) });
      rows.push([
        s.id.slice(0, 12),
        s.name,
        `${cpu.toFixed(2)}%`,
        g ? `${human(g.memoryBytes)} / ${g.memoryLimit !== undefined ? human(g.memoryLimit) : "unlimited"}` : "-",
        g ? `${g.pids}${g.pidsLimit !== undefined ? ` / ${g.pidsLimit}` : ""}` : "-",
        `${human(net.rx)} / ${human(net.tx)}`,
        `${net.rp} / ${net.tp}`,
        String(net.d),
        g ? `${human(g.blockReadBytes)} / ${human(g.blockWriteBytes)}` : "-",
      ]);
    }
    if (values.format === "json") {
      for (const j of json) out(JSON.stringify(j));
    } else {
      if (!values["no-stream"]) process.stdout.write("\x1b[2J\x1b[H"); // live refresh: clear the terminal
      table(rows, out);
    }
    if (values["no-stream"]) return 0;
    prev = new Map(cur.map((s) => [s.id, s]));
  }
}

/** `berth events [--since T] [--until T] [--filter k=v]`: the event stream, one line per event. */
export async function eventsCommand(c: Client, argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { since: { type: "string" }, until: { type: "string" }, filter: { type: "string", short: "f", multiple: true }, format: { type: "string" } },
  });
  const filters: Record<string, string[]> = {};
  for (const f of values.filter ?? []) {
    const i = f.indexOf("=");
    if (i <= 0) throw invalid("bad-filter", `bad filter ${JSON.stringify(f)}: use key=value`, "filter");
    const k = f.slice(0, i);
    filters[k] = [...(filters[k] ?? []), f.slice(i + 1)];
  }
  const q = new URLSearchParams();
  if (values.since) q.set("since", values.since);
  if (values.until) q.set("until", values.until);
  if (Object.keys(filters).length > 0) q.set("filters", JSON.stringify(filters));
  const res = await fetch(`http://berth/events?${q}`, { unix: c.socket });
  if (!res.ok || !res.body) throw invalid("events", `cannot read events: ${await res.text()}`);
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body) {
    buf += dec.decode(chunk as Uint8Array, { stream: true });
    let i = buf.indexOf("\n");
    while (i >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (values.format === "json") out(line);
      else {
        const e = JSON.parse(line) as { Type: string; Action: string; Actor: { ID: string; Attributes: Record<string, string> }; timeNano: number };
        const attrs = Object.entries(e.Actor.Attributes).map(([k, v]) => `${k}=${v}`).join(", ");
        out(`${new Date(e.timeNano / 1e6).toISOString()} ${e.Type} ${e.Action} ${e.Actor.ID.slice(0, 12)} (${attrs})`);
      }
      i = buf.indexOf("\n");
    }
  }
  return 0;
}
