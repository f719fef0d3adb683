/** Shapes shared by the benchmark runner (bench/run.ts), its scenarios and the report. */

export interface BenchOptions {
  /** The tiny version (smoke test): few iterations, small scales. */
  quick: boolean;
  /** Containers already attached when control-plane latency is probed. */
  scales: number[];
  /** Timed probe cycles per cell. */
  probes: number;
  /** Published-port counts for the ports scenario. */
  portCounts: number[];
  /** Seconds per iperf3 run. */
  iperfSeconds: number;
  /** Repetitions per data-plane path (paired with loopback). */
  dataplaneReps: number;
  /** Queries per DNS latency run. */
  dnsQueries: number;
  /** Where the report, charts and raw JSON go. */
  out: string;
  /** The repository root. */
  root: string;
  /** Directory of Berth's CNI plugins (scripts/build.sh makes dist/cni). */
  berthCniDir: string;
  /** Progress lines go here (stderr). */
  log(msg: string): void;
}

export interface Table {
  title: string;
  head: string[];
  rows: (string | number)[][];
}

export interface Bar {
  series: string;
  value: number;
}

export interface Chart {
  /** File name without extension (the runner writes NAME.svg and NAME.png). */
  name: string;
  title: string;
  unit: string;
  groups: { label: string; bars: Bar[] }[];
}

export interface Target {
  what: string;
  /** The measured value, in the unit of `limit`. */
  value: number;
  limit: number;
  unit: string;
  met: boolean;
}

export interface Section {
  id: string;
  title: string;
  /** Method, in a few lines of markdown. */
  method: string;
  tables: Table[];
  charts: Chart[];
  targets: Target[];
  notes: string[];
  /** Raw samples, written to results.json. */
  raw?: unknown;
}

export interface Scenario {
  id: string;
  title: string;
  /** Why the scenario cannot run on this machine, or undefined when it can. */
  unavailable?(o: BenchOptions): string | undefined;
  run(o: BenchOptions): Promise<Section>;
}

export function emptySection(id: string, title: string, method: string): Section {
  return { id, title, method, tables: [], charts: [], targets: [], notes: [] };
}
