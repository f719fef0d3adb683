/**
 * Fault injection points. Production code calls `faults.hit("point")` between
 * setup steps (and `faults.checkpoint("point")` between teardown steps); tests
 * arm a point so the step fails there and prove that rollback leaves nothing
 * behind. Unarmed, it costs one Map lookup.
 *
 * Crash mode: the environment variable BERTH_FAULT="point:kill[,point2:kill:N]"
 * makes the process SIGKILL itself at the (N-th, default first) hit of a point,
 * at `hit` and `checkpoint` points alike (berthd arms it once it has started;
 * CNI plugins call `crashPoint`). Only honoured when explicitly set: the crash
 * consistency tests (test/netns/crash.test.ts) use it to prove that a restart
 * or a CNI DEL/GC recovers from a process dying at any step.
 */
import { systemError } from "../errors.ts";

export const FAULT_ENV = "BERTH_FAULT";

/** Parses BERTH_FAULT: "point:kill" or "point:kill:N", comma separated. */
export function parseKillSpec(spec: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of (spec ?? "").split(",")) {
    const m = /^(.+):kill(?::(\d+))?$/.exec(part.trim());
    if (m) out.set(m[1]!, m[2] ? Math.max(1, Number(m[2])) : 1);
  }
  return out;
}

function countDown(kills: Map<string, number>, point: string): void {
  const n = kills.get(point);
  if (n === undefined) return;
  if (n > 1) {
    kills.set(point, n - 1);
    return;
  }
  process.kill(process.pid, "SIGKILL");
}

export class Faults {
  private readonly armed = new Map<string, number>();
  private kills = new Map<string, number>();

  /** Makes the n-th next hit of `point` (default: the next one) throw. */
  arm(point: string, nth = 1): void {
    this.armed.set(point, nth);
  }

  /** Crash mode from a BERTH_FAULT value (see above); undefined or "" disarms it. */
  armKills(spec: string | undefined): void {
    this.kills = parseKillSpec(spec);
  }

  clear(): void {
    this.armed.clear();
    this.kills.clear();
  }

  hit(point: string): void {
    if (this.kills.size > 0) countDown(this.kills, point);
    const n = this.armed.get(point);
    if (n === undefined) return;
    if (n <= 1) {
      this.armed.delete(point);
      throw systemError("injected-fault", `injected fault at ${point}`);
    }
    this.armed.set(point, n - 1);
  }

  /** A point between teardown steps: only crash mode applies (teardown is best effort, nothing to roll back). */
  checkpoint(point: string): void {
    if (this.kills.size > 0) countDown(this.kills, point);
  }
}

let processKills: Map<string, number> | undefined;

/**
 * A crash point in a short-lived process (the CNI plugins): SIGKILLs the process
 * when BERTH_FAULT names `point`; otherwise a no-op.
 */
export function crashPoint(point: string): void {
  processKills ??= parseKillSpec(process.env[FAULT_ENV]);
  if (processKills.size > 0) countDown(processKills, point);
}
