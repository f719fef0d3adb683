/**
 * Fault injection points. Production code calls `faults.hit("point")` between
 * steps; tests arm a point so the step fails there and prove that rollback
 * leaves nothing behind. Unarmed, it costs one Map lookup.
 */
import { systemError } from "../errors.ts";

export class Faults {
  private readonly armed = new Map<string, number>();

  /** Makes the n-th next hit of `point` (default: the next one) throw. */
  arm(point: string, nth = 1): void {
    this.armed.set(point, nth);
  }

  clear(): void {
    this.armed.clear();
  }

  hit(point: string): void {
    const n = this.armed.get(point);
    if (n === undefined) return;
    if (n <= 1) {
      this.armed.delete(point);
      throw systemError("injected-fault", `injected fault at ${point}`);
    }
    this.armed.set(point, n - 1);
  }
}
