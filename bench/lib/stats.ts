/** Small statistics and formatting helpers for the benchmark report. */

/** The p-th percentile (nearest rank) of the finite values of xs; NaN when there are none. */
export function pct(xs: readonly number[], p: number): number {
  // a failed measurement is NaN: left out rather than poisoning the order
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const median = (xs: readonly number[]): number => pct(xs, 50);
export const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

/** A number for a table cell: "–" for NaN/undefined, else `digits` decimals. */
export function fmt(x: number | undefined, digits = 1): string {
  return x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

/** "p50 [p99]" of a sample. */
export function p50p99(xs: readonly number[], digits = 1): string {
  return xs.length === 0 ? "–" : `${fmt(pct(xs, 50), digits)} [${fmt(pct(xs, 99), digits)}]`;
}

/** x / y as "0.42×", "–" when either is missing. */
export function ratio(x: number | undefined, y: number | undefined, digits = 2): string {
  if (x === undefined || y === undefined || !Number.isFinite(x) || !Number.isFinite(y) || y === 0) return "–";
  return `${(x / y).toFixed(digits)}×`;
}
