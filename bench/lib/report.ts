/** The markdown report of one benchmark run: machine, targets, then one section per scenario. */
import { fmt } from "./stats.ts";
import type { Section, Table } from "./types.ts";

export interface RunInfo {
  started: string;
  seconds: number;
  quick: boolean;
  machine: string;
  loadBefore: string;
  loadAfter: string;
  versions: string[];
  /** Scenarios that could not run, with the reason. */
  skipped: { id: string; title: string; reason: string }[];
  /** Chart name -> file to link (PNG, or SVG when no converter is installed). */
  chartFiles: Map<string, string>;
}

function table(t: Table): string {
  const cell = (v: string | number) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : fmt(v)) : v).replace(/\|/g, "\\|");
  return [`**${t.title}**`, "", `| ${t.head.join(" | ")} |`, `|${t.head.map(() => "---").join("|")}|`, ...t.rows.map((r) => `| ${r.map(cell).join(" | ")} |`), ""].join("\n");
}

export function renderReport(info: RunInfo, sections: Section[]): string {
  const out: string[] = [
    "# Berth side by side with its peers",
    "",
    `One run on one machine: ${info.started}, ${info.seconds.toFixed(0)} s${info.quick ? " (**quick/smoke scale: numbers are not meaningful**)" : ""}.`,
    `Machine: ${info.machine}. Load average before/after: ${info.loadBefore} / ${info.loadAfter}.`,
    "",
    ...info.versions.map((v) => `- ${v}`),
    "",
    "Latencies in ms unless marked; `p50 [p99]`; ratios are Berth ÷ peer (lower is better for times, higher for",
    "throughput) and, for the data plane, path ÷ loopback measured in the same repetition.",
    "",
  ];
  const targets = sections.flatMap((s) => s.targets.map((t) => ({ s, t })));
  if (targets.length > 0) {
    out.push("## Targets", "", "| target | measured | limit | met |", "|---|---|---|---|");
    for (const { t } of targets) out.push(`| ${t.what} | ${fmt(t.value, 2)} ${t.unit} | ${fmt(t.limit, 2)} ${t.unit} | ${t.met ? "yes" : "**no**"} |`);
    out.push("");
  }
  if (info.skipped.length > 0) {
    out.push("## Not run", "");
    for (const s of info.skipped) out.push(`- ${s.title} (\`${s.id}\`): ${s.reason}`);
    out.push("");
  }
  for (const s of sections) {
    out.push(`## ${s.title}`, "", s.method, "");
    for (const t of s.tables) out.push(table(t));
    for (const c of s.charts) {
      const f = info.chartFiles.get(c.name);
      if (f) out.push(`![${c.title}](${f})`, "");
    }
    for (const n of s.notes) out.push(`- ${n}`);
    if (s.notes.length > 0) out.push("");
  }
  return `${out.join("\n")}\n`;
}
