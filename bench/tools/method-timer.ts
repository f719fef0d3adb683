/**
 * Wall-clock time per method of live objects (for the profile tools): `wrap(obj, label)`
 * replaces each method of `obj` (its class's, or its own for a plain object) with a timed
 * one; `MethodTimer.rows` answers total ms and calls per `label.method`. Nested calls are
 * counted in each wrapper, so totals overlap (a caller includes its callees).
 */
export class MethodTimer {
  readonly acc = new Map<string, { ms: number; calls: number }>();

  wrap(obj: object, label: string): void {
    const acc = this.acc;
    const proto = Object.getPrototypeOf(obj) as Record<string, unknown>;
    const names = proto === Object.prototype ? Object.keys(obj) : Object.getOwnPropertyNames(proto);
    for (const k of names) {
      if (k === "constructor") continue;
      const f = (obj as Record<string, unknown>)[k];
      if (typeof f !== "function") continue;
      (obj as Record<string, unknown>)[k] = function (this: unknown, ...args: unknown[]) {
        const t0 = performance.now();
        const done = () => {
          const a = acc.get(`${label}.${k}`) ?? { ms: 0, calls: 0 };
          a.ms += performance.now() - t0;
          a.calls++;
          acc.set(`${label}.${k}`, a);
        };
        const r = (f as (...a: unknown[]) => unknown).apply(this, args);
        if (r instanceof Promise) return r.finally(done);
        done();
        return r;
      };
    }
  }

  /** Total ms per method so far. */
  snapshot(): Map<string, number> {
    return new Map([...this.acc].map(([k, v]) => [k, v.ms]));
  }

  /** The table: total, calls, mean, and total divided by `per` (e.g. per connect). */
  print(per: number, unit: string, top = Number.POSITIVE_INFINITY): void {
    console.log(`method                                   total ms   calls   mean ms   ms/${unit}`);
    for (const [k, v] of [...this.acc].sort((x, y) => y[1].ms - x[1].ms).slice(0, top)) {
      console.log(`${k.padEnd(40)} ${v.ms.toFixed(0).padStart(8)} ${String(v.calls).padStart(7)} ${(v.ms / v.calls).toFixed(2).padStart(9)} ${(v.ms / per).toFixed(2).padStart(12)}`);
    }
  }

  /** Per method, ms per item over two spans: from the start to `a`, and from `b` to now (`n` items each). */
  printSpans(a: Map<string, number>, b: Map<string, number>, n: number, top = 12): void {
    for (const [k, v] of [...this.acc].sort((x, y) => y[1].ms - x[1].ms).slice(0, top)) {
      const first = (a.get(k) ?? 0) / n;
      const last = (v.ms - (b.get(k) ?? 0)) / n;
      console.log(`${k.padEnd(40)} ${first.toFixed(2).padStart(8)} ${last.toFixed(2).padStart(8)}`);
    }
  }
}

/** The q-quantile of samples, formatted. */
export function quantile(a: readonly number[], q: number): string {
  return a.slice().sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * q))]!.toFixed(1);
}
