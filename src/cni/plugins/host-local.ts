/**
 * `host-local` IPAM: the reference plugin's configuration (ranges / legacy
 * subnet keys, routes, dataDir, resolvConf; runtimeConfig ips and ipRanges,
 * args.cni.ips, CNI_ARGS IP) over Berth's Ipam. Leases live in one SQLite store
 * at `<dataDir>/berth/berth.db`, keyed by (network name, container ID, ifname):
 * all addresses of one ADD are taken in one transaction (all or nothing), and
 * concurrent plugin processes serialise on the database lock.
 *
 * A network with several range sets of one family holds one address per set;
 * the second and later of a family are keyed "<ifname>/<set index>".
 * GC (which the reference plugin lacks) releases every allocation of the network
 * whose attachment is not in cni.dev/valid-attachments.
 */
import { existsSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { crashPoint } from "../../controller/faults.ts";
import { BerthError } from "../../errors.ts";
import { Ipam } from "../../ipam/ipam.ts";
import { IP, Prefix } from "../../net/index.ts";
import { openSqliteStore, type SqliteStore } from "../../store/sqlite.ts";
import type { AllocationRecord, IpamPoolConfig } from "../../store/types.ts";
import { CNI_ERR, cniError } from "../errors.ts";
import { type CniEnv, type CniPlugin, parseCniArgs } from "../skel.ts";
import { type CniDNS, type CniResult, type CniRoute, emptyResult, type NetConf } from "../types.ts";
import { type Obj, optArray, optObject, optString, parseRoutes, requestedIPs, validAttachments } from "./common.ts";

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
/** CNI_ARGS keys host-local understands (others need IgnoreUnknown=1, as with the reference plugin). */
const KNOWN_ARGS = ["IP", "MAC"] as const;

export interface HostLocalRange {
  subnet: Prefix;
  rangeStart: IP;
  rangeEnd: IP;
  gateway?: IP;
}

export interface HostLocalConf {
  name: string;
  rangeSets: HostLocalRange[][];
  requested: IP[];
  routes: CniRoute[];
  dataDir: string;
  resolvConf?: string;
}

const invalidConf = (msg: string) => cniError(CNI_ERR.invalidConfig, msg);

function parseIPAt(s: string, where: string): IP {
  const ip = IP.tryParse(s);
  if (!ip) throw invalidConf(`${where}: invalid IP address ${JSON.stringify(s)}`);
  return ip;
}

/** One range, canonicalised like the reference plugin (defaults: start = network+1, end = last usable, gateway = network+1). */
export function parseRange(v: unknown, where: string): HostLocalRange {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw invalidConf(`${where} must be an object, got ${JSON.stringify(v)}`);
  const o = v as Obj;
  const s = optString(o, "subnet", `${where}.subnet`);
  if (!s) throw invalidConf(`${where}.subnet is required`);
  let subnet: Prefix;
  try {
    subnet = Prefix.parse(s, `${where}.subnet`);
  } catch (e) {
    throw invalidConf(`${where}.subnet: ${(e as Error).message}`);
  }
  if (subnet.length > subnet.ip.bits - 2) throw invalidConf(`${where}.subnet: network ${subnet} is too small to allocate from`);
  const inside = (key: string): IP | undefined => {
    const x = optString(o, key, `${where}.${key}`);
    if (x === undefined) return undefined;
    const ip = parseIPAt(x, `${where}.${key}`);
    if (!subnet.contains(ip)) throw invalidConf(`${where}.${key} ${ip} is not in network ${subnet}`);
    return ip;
  };
  const rangeStart = inside("rangeStart") ?? subnet.nth(1);
  const rangeEnd = inside("rangeEnd") ?? (subnet.family === 4 ? subnet.last().add(-1) : subnet.last());
  if (rangeStart.compare(rangeEnd) > 0) throw invalidConf(`${where}: rangeStart ${rangeStart} is after rangeEnd ${rangeEnd}`);
  const gw = optString(o, "gateway", `${where}.gateway`);
  const gateway = gw !== undefined ? parseIPAt(gw, `${where}.gateway`) : subnet.nth(1);
  if (gateway.family !== subnet.family) throw invalidConf(`${where}.gateway ${gateway} is not of the family of ${subnet}`);
  return { subnet, rangeStart, rangeEnd, gateway };
}

export function rangeContains(r: HostLocalRange, ip: IP): boolean {
  return ip.family === r.subnet.family && r.subnet.contains(ip) && ip.compare(r.rangeStart) >= 0 && ip.compare(r.rangeEnd) <= 0;
}

function rangesOverlap(a: HostLocalRange, b: HostLocalRange): boolean {
  return a.subnet.family === b.subnet.family && a.rangeStart.compare(b.rangeEnd) <= 0 && b.rangeStart.compare(a.rangeEnd) <= 0;
}

export function describeSet(set: readonly HostLocalRange[]): string {
  return set.map((r) => `${r.rangeStart}-${r.rangeEnd}`).join(",");
}

function parseRangeSets(v: unknown, where: string): HostLocalRange[][] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidConf(`${where} must be a list of range sets, got ${JSON.stringify(v)}`);
  return v.map((set, i) => {
    if (!Array.isArray(set) || set.length === 0) {
      throw invalidConf(`${where}[${i}] must be a non-empty list of ranges, got ${JSON.stringify(set)}`);
    }
    return set.map((r, j) => parseRange(r, `${where}[${i}][${j}]`));
  });
}

/** Parses and checks the whole configuration (pure: no files, no store). */
export function parseHostLocal(conf: NetConf, env: Pick<CniEnv, "args">): HostLocalConf {
  const ipam = optObject(conf as Obj, "ipam", "ipam");
  if (!ipam) throw invalidConf("host-local: missing ipam section in network configuration");
  parseCniArgs(env.args, KNOWN_ARGS);
  const sets: HostLocalRange[][] = [];
  const rc = conf.runtimeConfig?.ipRanges;
  sets.push(...parseRangeSets(rc, "runtimeConfig.ipRanges"));
  if (ipam.subnet !== undefined && ipam.subnet !== "") {
    sets.push([parseRange({ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }, "ipam")]);
  }
  sets.push(...parseRangeSets(ipam.ranges, "ipam.ranges"));
  if (sets.length === 0) throw invalidConf("host-local: no IP ranges specified (ipam.ranges or ipam.subnet)");
  sets.forEach((set, i) => {
    const fam = set[0]?.subnet.family;
    set.forEach((r, j) => {
      if (r.subnet.family !== fam) throw invalidConf(`ipam range set ${i}: mixed address families (${set[0]?.subnet} and ${r.subnet})`);
      for (let k = 0; k < j; k++) {
        const o = set[k];
        if (o && rangesOverlap(o, r)) throw invalidConf(`ipam range set ${i}: ranges ${describeSet([o])} and ${describeSet([r])} overlap`);
      }
    });
  });
  for (let i = 0; i < sets.length; i++) {
    for (let j = i + 1; j < sets.length; j++) {
      if (sets[i]?.some((a) => sets[j]?.some((b) => rangesOverlap(a, b)))) throw invalidConf(`ipam range set ${i} overlaps with range set ${j}`);
    }
  }
  const dataDir = optString(ipam, "dataDir", "ipam.dataDir") ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/")) throw invalidConf(`ipam.dataDir must be an absolute path, got ${JSON.stringify(dataDir)}`);
  const resolvConf = optString(ipam, "resolvConf", "ipam.resolvConf");
  optArray(ipam, "routes", "ipam.routes");
  const out: HostLocalConf = {
    name: conf.name,
    rangeSets: sets,
    requested: requestedIPs(conf, env),
    routes: parseRoutes(ipam.routes, "ipam.routes"),
    dataDir,
  };
  if (resolvConf) out.resolvConf = resolvConf;
  return out;
}

/** The allocation key's ifname for range set `i`: the first set of a family uses ifname itself. */
export function keyIfname(c: HostLocalConf, ifname: string, i: number): string {
  const fam = c.rangeSets[i]?.[0]?.subnet.family;
  const first = c.rangeSets.findIndex((s) => s[0]?.subnet.family === fam);
  return first === i ? ifname : `${ifname}/${i}`;
}

function ownsKey(ifname: string, keyIf: string): boolean {
  return keyIf === ifname || keyIf.startsWith(`${ifname}/`);
}

/** Assigns each requested IP to the range set containing it; throws naming those that fit none. */
export function assignRequested(c: HostLocalConf): (IP | undefined)[] {
  const left = [...c.requested];
  const out = c.rangeSets.map((set) => {
    const i = left.findIndex((ip) => set.some((r) => rangeContains(r, ip)));
    return i < 0 ? undefined : left.splice(i, 1)[0];
  });
  if (left.length > 0) {
    throw invalidConf(
      `failed to allocate all requested IPs: ${left.join(" ")} not inside any range of network ${c.name} (${c.rangeSets.map(describeSet).join("; ")})`,
    );
  }
  return out;
}

/** DNS settings from a resolv.conf file (nameserver, domain, search, options). */
export function parseResolvConf(text: string): CniDNS {
  const dns: CniDNS = {};
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    const [k, ...rest] = line.split(/\s+/);
    if (!k || rest.length === 0) continue;
    if (k === "nameserver") dns.nameservers = [...(dns.nameservers ?? []), rest[0] ?? ""];
    else if (k === "domain") dns.domain = rest[0] ?? "";
    else if (k === "search") dns.search = rest;
    else if (k === "options") dns.options = [...(dns.options ?? []), ...rest];
  }
  return dns;
}

function toPool(r: HostLocalRange): IpamPoolConfig {
  const p: IpamPoolConfig = { subnet: r.subnet, rangeStart: r.rangeStart, rangeEnd: r.rangeEnd, auxAddresses: {} };
  if (r.gateway) p.gateway = r.gateway;
  return p;
}

function storeDir(c: HostLocalConf): string {
  return join(c.dataDir, "berth");
}

/**
 * The lease store. Leases name containers, and no container outlives a reboot,
 * so commits only need to survive the plugin being killed, not the machine
 * going down: durability "os" (no fsync, like the reference plugin's files)
 * takes 10-20 ms off every call. A store that a machine crash left unreadable
 * is from an earlier boot, so it is moved aside and started afresh.
 */
function openStore(c: HostLocalConf): SqliteStore {
  const dir = storeDir(c);
  try {
    return openSqliteStore(dir, { durability: "os" });
  } catch (e) {
    const db = join(dir, "berth.db");
    if (/malformed|not a database|corrupt/i.test((e as Error).message) && writtenBeforeBoot(db)) {
      const aside = `${db}.corrupt-${Date.now()}`;
      try {
        renameSync(db, aside);
        for (const x of ["-wal", "-shm"]) rmSync(`${db}${x}`, { force: true });
        return openSqliteStore(dir, { durability: "os" });
      } catch {}
    }
    throw cniError(CNI_ERR.ioFailure, `host-local: cannot open lease store under ${c.dataDir}: ${(e as Error).message}`);
  }
}

/** Whether a file was last written before the machine booted (its leases name no living container). */
function writtenBeforeBoot(path: string): boolean {
  try {
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    return statSync(path).mtimeMs / 1000 < btime;
  } catch {
    return false;
  }
}

async function withStore<T>(c: HostLocalConf, f: (s: SqliteStore) => Promise<T>): Promise<T> {
  const s = openStore(c);
  try {
    return await f(s);
  } finally {
    await s.close().catch(() => undefined);
  }
}

/** Leases of (network, container) that belong to ifname; undefined when no store exists yet. */
async function leasesOf(c: HostLocalConf, env: CniEnv): Promise<AllocationRecord[] | undefined> {
  if (!existsSync(join(storeDir(c), "berth.db"))) return undefined;
  return withStore(c, async (s) =>
    (await s.allocations.list({ networkId: c.name, containerId: env.containerId })).filter((a) => ownsKey(env.ifname, a.ifname)),
  );
}

export const plugin: CniPlugin = {
  async add(conf: NetConf, env: CniEnv): Promise<CniResult> {
    const c = parseHostLocal(conf, env);
    const wants = assignRequested(c);
    let dns: CniDNS = {};
    if (c.resolvConf) {
      try {
        dns = parseResolvConf(readFileSync(c.resolvConf, "utf8"));
      } catch (e) {
        throw cniError(CNI_ERR.ioFailure, `host-local: cannot read resolvConf ${c.resolvConf}: ${(e as Error).message}`);
      }
    }
    const r = emptyResult(conf.cniVersion);
    await withStore(c, (s) =>
      s.transaction(async (tx) => {
        const ipam = new Ipam(tx);
        for (let i = 0; i < c.rangeSets.length; i++) {
          const set = c.rangeSets[i] ?? [];
          const want = wants[i];
          const pools = (want ? set.filter((x) => rangeContains(x, want)) : set).map(toPool);
          try {
            const a = await ipam.allocate({
              networkId: c.name,
              containerId: env.containerId,
              ifname: keyIfname(c, env.ifname, i),
              family: set[0]?.subnet.family ?? 4,
              pools,
              field: `range set ${i}`,
              ...(want ? { requested: want } : {}),
            });
            r.ips.push({ address: a.ipnet, ...(a.gateway ? { gateway: a.gateway } : {}) });
          } catch (e) {
            if (e instanceof BerthError && e.code === "pool-exhausted") {
              throw cniError(CNI_ERR.tryAgainLater, `host-local: no IP addresses available in range set: ${describeSet(set)}`);
            }
            if (e instanceof BerthError && (e.kind === "invalid" || e.kind === "conflict")) {
              throw cniError(e.kind === "conflict" ? CNI_ERR.conflict : CNI_ERR.invalidConfig, `host-local: range set ${i}: ${e.message}`);
            }
            throw e; // busy store -> try again later, system errors -> internal (toCniError)
          }
        }
        crashPoint("cni.host-local.add:before-commit");
      }),
    );
    crashPoint("cni.host-local.add:after-commit");
    r.routes = c.routes;
    r.dns = dns;
    return r;
  },

  async del(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseHostLocal(conf, env);
    const mine = await leasesOf(c, env);
    if (!mine || mine.length === 0) return;
    await withStore(c, (s) =>
      s.transaction(async (tx) => {
        const keys = new Set(mine.map((a) => a.ifname));
        for (const ifname of keys) await tx.allocations.delete({ networkId: c.name, containerId: env.containerId, ifname });
      }),
    );
    crashPoint("cni.host-local.del:after-commit");
  },

  async check(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseHostLocal(conf, env);
    const mine = (await leasesOf(c, env)) ?? [];
    c.rangeSets.forEach((set, i) => {
      const k = keyIfname(c, env.ifname, i);
      const held = mine.find((a) => a.ifname === k && a.family === set[0]?.subnet.family);
      if (!held) {
        throw cniError(
          CNI_ERR.checkFailed,
          `host-local: failed to find the address of container ${env.containerId} interface ${env.ifname} in range set ${describeSet(set)} of network ${c.name}`,
        );
      }
    });
  },

  async status(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseHostLocal(conf, env);
    try {
      await withStore(c, async () => undefined);
    } catch (e) {
      throw cniError(CNI_ERR.notAvailable, `host-local: lease store under ${c.dataDir} is not usable: ${(e as Error).message}`);
    }
  },

  async gc(conf: NetConf, env: CniEnv): Promise<void> {
    const c = parseHostLocal(conf, env);
    const keep = validAttachments(conf);
    if (!existsSync(join(storeDir(c), "berth.db"))) return;
    await withStore(c, (s) =>
      s.transaction(async (tx) => {
        const dead = new Map<string, { containerId: string; ifname: string }>();
        for (const a of await tx.allocations.list({ networkId: c.name })) {
          const base = a.ifname.split("/")[0] ?? a.ifname;
          if (!keep.has(`${a.containerId}/${base}`)) dead.set(`${a.containerId}\0${a.ifname}`, { containerId: a.containerId, ifname: a.ifname });
        }
        for (const k of dead.values()) await tx.allocations.delete({ networkId: c.name, ...k });
      }),
    );
  },
};
