/**
 * Control groups for containers started by `berth run`: CPU, memory, pids and
 * block I/O limits. cgroup v2 (unified hierarchy with the controllers enabled) is used
 * when the machine has it; on a hybrid/v1 machine (like the CI machine, whose
 * controllers are all bound to v1 hierarchies) the same limits are applied
 * through the v1 controllers so that they still hold.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BerthError, invalid, systemError, unavailable } from "../errors.ts";

export interface CgroupLimits {
  memoryBytes?: number;
  /** CPUs as a fraction, e.g. 0.5 = half a core. */
  cpus?: number;
  pids?: number;
  /** Block I/O throttles per device (Docker's --device-read-bps and friends). */
  io?: IoLimit[];
}

/** Throttles for one block device: bytes or operations per second, read and write. */
export interface IoLimit {
  /** A block device node, e.g. /dev/vda (a whole disk: the kernel throttles disks, not partitions). */
  path: string;
  readBps?: number;
  writeBps?: number;
  readIops?: number;
  writeIops?: number;
}

const IO_KEYS = [
  ["readBps", "rbps", "blkio.throttle.read_bps_device"],
  ["writeBps", "wbps", "blkio.throttle.write_bps_device"],
  ["readIops", "riops", "blkio.throttle.read_iops_device"],
  ["writeIops", "wiops", "blkio.throttle.write_iops_device"],
] as const;

/** "MAJ:MIN" of a block device node; `invalid` when the path is not one. */
export function blockDeviceNumber(path: string): string {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    throw invalid("bad-device", `block device ${JSON.stringify(path)} does not exist`, "io");
  }
  if (!st.isBlockDevice()) throw invalid("bad-device", `${JSON.stringify(path)} is not a block device`, "io");
  return devNumber(st.rdev);
}

/** "MAJ:MIN" of a device number as stat(2) reports it (Linux's new_encode_dev layout). */
export function devNumber(dev: number): string {
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
  return `${major}:${minor}`;
}

export type CgroupMode = "v2" | "v1";

export interface CgroupStats {
  cpuNanos: number;
  memoryBytes: number;
  memoryLimit: number | undefined;
  pids: number;
  pidsLimit: number | undefined;
  blockReadBytes: number;
  blockWriteBytes: number;
}
const CONTROLLERS = ["memory", "cpu", "pids"] as const;
/** v1 hierarchies joined only for accounting (stats), when the machine has them. */
const V1_ACCOUNTING = ["cpuacct", "blkio"] as const;
const CPU_PERIOD_US = 100_000;
const MIN_MEMORY = 6 * 1024 * 1024; // Docker's minimum

export function validateLimits(l: CgroupLimits): void {
  if (l.memoryBytes !== undefined && (!Number.isSafeInteger(l.memoryBytes) || l.memoryBytes < MIN_MEMORY)) {
    throw invalid("bad-memory", `memory limit ${l.memoryBytes} is below the minimum of 6MB`, "memory");
  }
  if (l.cpus !== undefined && (!Number.isFinite(l.cpus) || l.cpus <= 0 || l.cpus > 1024)) {
    throw invalid("bad-cpus", `cpus ${l.cpus} must be a number above 0 (e.g. 0.5 or 2)`, "cpus");
  }
  if (l.pids !== undefined && (!Number.isSafeInteger(l.pids) || l.pids < 1)) {
    throw invalid("bad-pids", `pids limit ${l.pids} must be a positive integer`, "pids");
  }
  const seen = new Set<string>();
  for (const io of l.io ?? []) {
    const dev = blockDeviceNumber(io.path);
    if (seen.has(dev)) throw invalid("duplicate-device", `block device ${io.path} has I/O limits twice: give each device once`, "io");
    seen.add(dev);
    if (IO_KEYS.every(([k]) => io[k] === undefined)) throw invalid("bad-io-limit", `no I/O limit given for ${io.path}`, "io");
    for (const [k] of IO_KEYS) {
      const v = io[k];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) {
        throw invalid("bad-io-limit", `I/O limit ${k} ${v} for ${io.path} must be a positive integer`, "io");
      }
    }
  }
}

/**
 * argv that runs `argv` inside the cgroup whose cgroup.procs files are given: a
 * tiny shell trampoline writes its own pid into each file first, then execs, so
 * nothing of the command ever runs outside the cgroup's limits.
 */
export function inCgroupArgv(procsFiles: readonly string[], argv: readonly string[]): string[] {
  const trampoline = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
  return ["sh", "-c", trampoline, "sh", ...procsFiles, "--", ...argv];
}

export class Cgroups {
  readonly root: string;
  readonly parent: string;
  readonly mode: CgroupMode;

  constructor(opts: { root?: string; parent?: string } = {}) {
    this.root = opts.root ?? "/sys/fs/cgroup";
    this.parent = opts.parent ?? "berth";
    this.mode = detectMode(this.root);
  }

  /** Directories that make up one cgroup (one for v2, one per controller for v1). */
  dirs(name: string): string[] {
    if (this.mode === "v2") return [join(this.root, this.parent, name)];
    return [...CONTROLLERS, ...this.v1Accounting].map((c) => join(this.root, c, this.parent, name));
  }

  private get v1Accounting(): string[] {
    return V1_ACCOUNTING.filter((c) => existsSync(join(this.root, c, "cgroup.procs")));
  }

  /** Creates the cgroup with its limits. Undone completely on failure. */
  async create(name: string, limits: CgroupLimits): Promise<string[]> {
    validateLimits(limits);
    if (this.mode === "v2") this.enableV2Controllers();
    const dirs = this.dirs(name);
    if (limits.io?.length && this.mode === "v1" && !this.v1Accounting.includes("blkio")) {
      throw unavailable("no-blkio", "block I/O limits need the blkio (cgroup v1) or io (cgroup v2) controller, which this machine lacks");
    }
    try {
      for (const d of dirs) mkdirSync(d, { recursive: true });
      this.writeLimits(name, limits);
      this.writeIoLimits(name, limits.io ?? []);
    } catch (e) {
      await this.remove(name);
      if (e instanceof BerthError) throw e;
      throw systemError("cgroup", `cannot create cgroup ${name}: ${(e as Error).message}`);
    }
    return dirs;
  }

  /** The cgroup.procs files a process must be written to, to join the cgroup. */
  procsFiles(name: string): string[] {
    return this.dirs(name).map((d) => join(d, "cgroup.procs"));
  }

  addProcess(name: string, pid: number): void {
    for (const f of this.procsFiles(name)) writeFileSync(f, String(pid));
  }

  pids(name: string): number[] {
    const seen = new Set<number>();
    for (const f of this.procsFiles(name)) {
      if (!existsSync(f)) continue;
      for (const line of readFileSync(f, "utf8").split("\n")) if (line.trim()) seen.add(Number(line));
    }
    return [...seen];
  }

  /** Kills every process in the cgroup (SIGKILL) and removes it. Missing is success. */
  async remove(name: string): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const pids = this.pids(name);
      for (const p of pids) {
        try {
          process.kill(p, "SIGKILL");
        } catch {
          /* already gone */
        }
      }
      let busy = false;
      for (const d of this.dirs(name)) {
        if (!existsSync(d)) continue;
        try {
          rmdirSync(d);
        } catch {
          busy = true;
        }
      }
      if (!busy) return;
      await Bun.sleep(20);
    }
    throw systemError("cgroup", `cgroup ${name} still has processes after kill`);
  }

  /** Removes Berth's parent cgroup(s) if they are empty (best effort). */
  removeParent(): void {
    const parents =
      this.mode === "v2" ? [join(this.root, this.parent)] : [...CONTROLLERS, ...this.v1Accounting].map((c) => join(this.root, c, this.parent));
    for (const d of parents) {
      try {
        rmdirSync(d);
      } catch {
        /* not empty or gone */
      }
    }
  }

  /** Resource usage read from the cgroup files (never estimated). */
  stats(name: string): CgroupStats {
    const num = (f: string) => {
      try {
        const v = readFileSync(f, "utf8").trim();
        return v === "max" ? undefined : Number(v);
      } catch {
        return undefined;
      }
    };
    const keyed = (f: string): Map<string, number> => {
      const m = new Map<string, number>();
      try {
        for (const line of readFileSync(f, "utf8").split("\n")) {
          const [k, v] = line.trim().split(/\s+/);
          if (k && v !== undefined) m.set(k, Number(v));
        }
      } catch {
        /* missing */
      }
      return m;
    };
    if (this.mode === "v2") {
      const d = this.dirs(name)[0]!;
      let rd = 0;
      let wr = 0;
      try {
        for (const line of readFileSync(join(d, "io.stat"), "utf8").split("\n")) {
          rd += Number(/rbytes=(\d+)/.exec(line)?.[1] ?? 0);
          wr += Number(/wbytes=(\d+)/.exec(line)?.[1] ?? 0);
        }
      } catch {
        /* io controller off */
      }
      return {
        cpuNanos: (keyed(join(d, "cpu.stat")).get("usage_usec") ?? 0) * 1000,
        memoryBytes: num(join(d, "memory.current")) ?? 0,
        memoryLimit: num(join(d, "memory.max")),
        pids: num(join(d, "pids.current")) ?? 0,
        pidsLimit: num(join(d, "pids.max")),
        blockReadBytes: rd,
        blockWriteBytes: wr,
      };
    }
    const at = (c: string, f: string) => join(this.root, c, this.parent, name, f);
    const mem = num(at("memory", "memory.limit_in_bytes"));
    let rd = 0;
    let wr = 0;
    try {
      for (const line of readFileSync(at("blkio", "blkio.throttle.io_service_bytes"), "utf8").split("\n")) {
        const [, op, v] = line.trim().split(/\s+/);
        if (op === "Read") rd += Number(v);
        if (op === "Write") wr += Number(v);
      }
    } catch {
      /* no blkio hierarchy */
    }
    return {
      cpuNanos: num(at("cpuacct", "cpuacct.usage")) ?? 0,
      memoryBytes: num(at("memory", "memory.usage_in_bytes")) ?? 0,
      memoryLimit: mem !== undefined && mem < 2 ** 62 ? mem : undefined,
      pids: num(at("pids", "pids.current")) ?? 0,
      pidsLimit: num(at("pids", "pids.max")),
      blockReadBytes: rd,
      blockWriteBytes: wr,
    };
  }

  readLimits(name: string): CgroupLimits {
    const out: CgroupLimits = {};
    if (this.mode === "v2") {
      const d = this.dirs(name)[0]!;
      const mem = readFileSync(join(d, "memory.max"), "utf8").trim();
      if (mem !== "max") out.memoryBytes = Number(mem);
      const [quota, period] = readFileSync(join(d, "cpu.max"), "utf8").trim().split(" ");
      if (quota !== "max") out.cpus = Number(quota) / Number(period);
      const pids = readFileSync(join(d, "pids.max"), "utf8").trim();
      if (pids !== "max") out.pids = Number(pids);
      return out;
    }
    const [memD, cpuD, pidsD] = this.dirs(name) as [string, string, string];
    const mem = Number(readFileSync(join(memD, "memory.limit_in_bytes"), "utf8"));
    if (mem < 2 ** 62) out.memoryBytes = mem;
    const quota = Number(readFileSync(join(cpuD, "cpu.cfs_quota_us"), "utf8"));
    if (quota > 0) out.cpus = quota / Number(readFileSync(join(cpuD, "cpu.cfs_period_us"), "utf8"));
    const pids = readFileSync(join(pidsD, "pids.max"), "utf8").trim();
    if (pids !== "max") out.pids = Number(pids);
    return out;
  }

  private writeLimits(name: string, l: CgroupLimits): void {
    if (this.mode === "v2") {
      const d = this.dirs(name)[0]!;
      if (l.memoryBytes !== undefined) writeFileSync(join(d, "memory.max"), String(l.memoryBytes));
      if (l.cpus !== undefined) writeFileSync(join(d, "cpu.max"), `${Math.round(l.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`);
      if (l.pids !== undefined) writeFileSync(join(d, "pids.max"), String(l.pids));
      return;
    }
    const [memD, cpuD, pidsD] = this.dirs(name) as [string, string, string];
    if (l.memoryBytes !== undefined) writeFileSync(join(memD, "memory.limit_in_bytes"), String(l.memoryBytes));
    if (l.cpus !== undefined) {
      writeFileSync(join(cpuD, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      writeFileSync(join(cpuD, "cpu.cfs_quota_us"), String(Math.round(l.cpus * CPU_PERIOD_US)));
    }
    if (l.pids !== undefined) writeFileSync(join(pidsD, "pids.max"), String(l.pids));
  }

  /** The I/O throttles in force, read back from the kernel's files ("MAJ:MIN" → limits). */
  readIoLimits(name: string): Map<string, Omit<IoLimit, "path">> {
    const out = new Map<string, Omit<IoLimit, "path">>();
    const put = (dev: string, k: (typeof IO_KEYS)[number][0], v: number) => {
      const cur = out.get(dev) ?? {};
      cur[k] = v;
      out.set(dev, cur);
    };
    if (this.mode === "v2") {
      const f = join(this.dirs(name)[0]!, "io.max");
      if (!existsSync(f)) return out;
      for (const line of readFileSync(f, "utf8").split("\n")) {
        const [dev, ...kv] = line.trim().split(/\s+/);
        if (!dev) continue;
        for (const [k, v2] of IO_KEYS) {
          const m = kv.find((x) => x.startsWith(`${v2}=`));
          if (m && m !== `${v2}=max`) put(dev, k, Number(m.slice(v2.length + 1)));
        }
      }
      return out;
    }
    for (const [k, , v1] of IO_KEYS) {
      const f = join(this.root, "blkio", this.parent, name, v1);
      if (!existsSync(f)) continue;
      for (const line of readFileSync(f, "utf8").split("\n")) {
        const [dev, v] = line.trim().split(/\s+/);
        if (dev && v) put(dev, k, Number(v));
      }
    }
    return out;
  }

  private writeIoLimits(name: string, limits: readonly IoLimit[]): void {
    for (const io of limits) {
      const dev = blockDeviceNumber(io.path);
      const refused = (e: unknown) =>
        invalid(
          "io-limit-refused",
          `the kernel refused the I/O limit for ${io.path} (${dev}): ${(e as Error).message}; throttles apply to whole disks, not partitions`,
          "io",
        );
      if (this.mode === "v2") {
        const kv = IO_KEYS.filter(([k]) => io[k] !== undefined).map(([k, v2]) => `${v2}=${io[k]}`);
        try {
          writeFileSync(join(this.dirs(name)[0]!, "io.max"), `${dev} ${kv.join(" ")}`);
        } catch (e) {
          throw refused(e);
        }
        continue;
      }
      for (const [k, , v1] of IO_KEYS) {
        if (io[k] === undefined) continue;
        try {
          writeFileSync(join(this.root, "blkio", this.parent, name, v1), `${dev} ${io[k]}`);
        } catch (e) {
          throw refused(e);
        }
      }
    }
  }

  private enableV2Controllers(): void {
    const parentDir = join(this.root, this.parent);
    mkdirSync(parentDir, { recursive: true });
    const have = readFileSync(join(this.root, "cgroup.controllers"), "utf8").trim().split(/\s+/);
    const want = [...CONTROLLERS, ...(have.includes("io") ? ["io"] : [])].map((c) => `+${c}`).join(" ");
    writeFileSync(join(this.root, "cgroup.subtree_control"), want);
    writeFileSync(join(parentDir, "cgroup.subtree_control"), want);
  }
}

function detectMode(root: string): CgroupMode {
  const ctl = join(root, "cgroup.controllers");
  if (existsSync(ctl)) {
    const have = readFileSync(ctl, "utf8").trim().split(/\s+/);
    if (CONTROLLERS.every((c) => have.includes(c))) return "v2";
  }
  if (CONTROLLERS.every((c) => existsSync(join(root, c, "cgroup.procs")))) return "v1";
  throw systemError(
    "cgroup-unavailable",
    `no usable cgroup hierarchy under ${root}: need the memory, cpu and pids controllers (cgroup v2, or v1)`,
  );
}
