/**
 * Forwarding state of VXLAN devices (overlay networks): the device's own FDB
 * (MAC -> remote VTEP address, `bridge fdb ... self`) and its neighbour table
 * (IP -> MAC, answered locally by a `proxy` VXLAN device). Read with
 * `bridge -j fdb` / `ip -j neigh`; changed in one `bridge -batch` and one
 * `ip -batch` per call.
 *
 * Only permanent entries with a remote destination count as "programmed": the
 * all-zero default entry and the bridge's own (`master`) entries are never
 * listed or touched.
 */
import { systemError } from "../errors.ts";
import { IP, MAC } from "../net/index.ts";
import type { Dataplane } from "./dataplane.ts";
import { run } from "./exec.ts";

export interface FdbEntry {
  mac: MAC;
  /** The remote VTEP. */
  dst: IP;
}

export interface NeighbourEntry {
  ip: IP;
  mac: MAC;
}

interface JFdb {
  mac: string;
  dst?: string;
  flags?: string[];
  master?: string;
  state?: string;
}

interface JNeigh {
  dst: string;
  lladdr?: string;
  state?: string[];
}

const ZERO_MAC = "00:00:00:00:00:00";

export class VxlanOps {
  constructor(private readonly dp: Dataplane) {}

  /** The programmed remote entries of a VXLAN device. */
  async fdb(ns: string | null, dev: string): Promise<FdbEntry[]> {
    const r = await this.dp.exec(ns, ["bridge", "-j", "fdb", "show", "dev", dev], { allowFailure: true });
    if (r.exitCode !== 0) {
      if (/does not exist|Cannot find device/.test(r.stderr)) return [];
      throw systemError("bridge-fdb", `bridge fdb show dev ${dev}: ${r.stderr.trim()}`);
    }
    const out: FdbEntry[] = [];
    for (const e of JSON.parse(r.stdout || "[]") as JFdb[]) {
      if (!e.dst || e.master || e.mac === ZERO_MAC || e.state !== "permanent") continue;
      const dst = IP.tryParse(e.dst);
      if (dst) out.push({ mac: MAC.parse(e.mac), dst });
    }
    return out;
  }

  /** The permanent neighbour entries of a device. */
  async neighbours(ns: string | null, dev: string): Promise<NeighbourEntry[]> {
    const out: NeighbourEntry[] = [];
    for (const fam of ["-4", "-6"]) {
      const r = await this.dp.exec(ns, ["ip", fam, "-j", "neigh", "show", "dev", dev], { allowFailure: true });
      if (r.exitCode !== 0) {
        if (/does not exist|Cannot find device/.test(r.stderr)) return [];
        throw systemError("ip-neigh", `ip neigh show dev ${dev}: ${r.stderr.trim()}`);
      }
      for (const n of JSON.parse(r.stdout || "[]") as JNeigh[]) {
        if (!n.lladdr || !(n.state ?? []).includes("PERMANENT")) continue;
        const ip = IP.tryParse(n.dst);
        if (ip) out.push({ ip, mac: MAC.parse(n.lladdr) });
      }
    }
    return out;
  }

  /** Adds (or re-points) and removes FDB entries of `dev` in one `bridge -batch`. */
  async applyFdb(ns: string | null, dev: string, add: readonly FdbEntry[], del: readonly MAC[]): Promise<void> {
    const lines = [
      ...del.map((m) => `fdb del ${m} dev ${dev} self`),
      ...add.map((e) => `fdb replace ${e.mac} dev ${dev} dst ${e.dst} self permanent`),
    ];
    if (lines.length === 0) return;
    const r = await run([...this.dp.nsPrefix(ns), "bridge", "-batch", "-"], { stdin: `${lines.join("\n")}\n`, allowFailure: true });
    if (r.exitCode !== 0) throw systemError("bridge-fdb", `bridge fdb batch on ${dev}${ns ? ` (netns ${ns})` : ""}: ${r.stderr.trim()}`);
  }

  /** Replaces and removes neighbour entries of `dev` in one `ip -batch`. */
  async applyNeighbours(ns: string | null, dev: string, add: readonly NeighbourEntry[], del: readonly IP[]): Promise<void> {
    const b = this.dp.batch(ns);
    for (const ip of del) b.deleteNeighbour(dev, ip);
    for (const n of add) b.replaceNeighbour(dev, n.ip, n.mac);
    await this.dp.apply(b);
  }
}
