/**
 * A small Prometheus registry: counters, gauges (set or computed at scrape
 * time) and histograms, rendered in the text exposition format 0.0.4.
 */
type Labels = Record<string, string>;

const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const key = (l: Labels) =>
  Object.keys(l)
    .sort()
    .map((k) => `${k}="${esc(l[k]!)}"`)
    .join(",");
const fmt = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN");

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  render(): string[];
}

export class Counter implements Family {
  readonly type = "counter";
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(key(labels)) ?? 0;
  }
  render(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${fmt(v)}`);
  }
}

export class Gauge implements Family {
  readonly type = "gauge";
  private readonly values = new Map<string, number>();
  private collector: (() => [Labels, number][]) | undefined;
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  set(labels: Labels, v: number): void {
    this.values.set(key(labels), v);
  }
  /** Values computed at scrape time (replaces set values). */
  collect(fn: () => [Labels, number][]): void {
    this.collector = fn;
  }
  render(): string[] {
    const entries: [string, number][] = this.collector ? this.collector().map(([l, v]) => [key(l), v]) : [...this.values];
    return entries.map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${fmt(v)}`);
  }
}

export class Histogram implements Family {
  readonly type = "histogram";
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  ) {}
  observe(labels: Labels, v: number): void {
    const k = key(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    this.buckets.forEach((b, i) => {
      if (v <= b) s.counts[i]! += 1;
    });
    s.sum += v;
    s.count += 1;
  }
  render(): string[] {
    const out: string[] = [];
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : "";
      this.buckets.forEach((b, i) => {
        out.push(`${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}`);
      });
      out.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ""} ${s.sum}`);
      out.push(`${this.name}_count${k ? `{${k}}` : ""} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  private readonly families = new Map<string, Family>();
  private readonly refreshers: (() => Promise<void>)[] = [];

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets?: number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }
  /** Async work run before each scrape (reading the store, the kernel). */
  beforeScrape(fn: () => Promise<void>): void {
    this.refreshers.push(fn);
  }

  private add<F extends Family>(f: F): F {
    if (this.families.has(f.name)) throw new Error(`metric ${f.name} registered twice`);
    this.families.set(f.name, f);
    return f;
  }

  async render(): Promise<string> {
    await Promise.all(this.refreshers.map((r) => r()));
    const lines: string[] = [];
    for (const f of this.families.values()) {
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.render());
    }
    return `${lines.join("\n")}\n`;
  }
}
