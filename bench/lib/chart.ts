/**
 * Grouped bar charts as SVG, converted to PNG with `rsvg-convert` (Debian
 * librsvg2-bin): no npm dependency, and the SVG stays next to the PNG.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sh } from "./proc.ts";
import type { Chart } from "./types.ts";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

function label(v: number): string {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toPrecision(2);
}

export function renderSvg(c: Chart): string {
  const series = [...new Set(c.groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const values = c.groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => Number.isFinite(v));
  const max = niceMax(Math.max(0, ...values));
  const barW = 26;
  const gap = 22;
  // wide enough for the longest group label (about 7 px per character at 12 px)
  const groupW = Math.max(series.length * barW + gap, 12 + 7 * Math.max(0, ...c.groups.map((g) => g.label.length)));
  const left = 70;
  const top = 50;
  const plotH = 300;
  const width = Math.max(560, left + 20 + c.groups.length * groupW);
  const legendCols = Math.max(1, Math.floor((width - left) / 210));
  const legendH = 22 * Math.ceil(series.length / legendCols);
  const height = top + plotH + 70 + legendH;
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<title>${esc(c.title)}</title>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`,
    `<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(c.unit)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (max * i) / 5;
    out.push(`<line x1="${left}" x2="${width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${label(v)}</text>`);
  }
  c.groups.forEach((g, gi) => {
    const x0 = left + 12 + gi * groupW + (groupW - gap - series.length * barW) / 2;
    for (const b of g.bars) {
      const si = series.indexOf(b.series);
      const x = x0 + si * barW;
      if (!Number.isFinite(b.value)) {
        out.push(`<text x="${x + barW / 2}" y="${y(0) - 4}" text-anchor="middle" fill="#999">n/a</text>`);
        continue;
      }
      out.push(`<rect x="${x}" y="${y(b.value)}" width="${barW - 3}" height="${Math.max(0.5, y(0) - y(b.value))}" fill="${COLORS[si % COLORS.length]}"/>`);
      out.push(`<text x="${x + (barW - 3) / 2}" y="${y(b.value) - 3}" text-anchor="middle" font-size="9">${label(b.value)}</text>`);
    }
    out.push(`<text x="${x0 + (series.length * barW) / 2}" y="${top + plotH + 18}" text-anchor="middle">${esc(g.label)}</text>`);
  });
  out.push(`<line x1="${left}" x2="${width - 10}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  series.forEach((s, i) => {
    const lx = left + (i % legendCols) * 210;
    const ly = top + plotH + 44 + Math.floor(i / legendCols) * 22;
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`);
    out.push(`<text x="${lx + 18}" y="${ly}">${esc(s)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n");
}

/** Writes NAME.svg and (when rsvg-convert is installed) NAME.png; returns the file to link. */
export function writeChart(dir: string, c: Chart): { file: string; png: boolean } {
  const svg = join(dir, `${c.name}.svg`);
  writeFileSync(svg, renderSvg(c));
  const png = join(dir, `${c.name}.png`);
  const r = sh(["rsvg-convert", "-f", "png", "-o", png, svg]);
  return r.code === 0 ? { file: `${c.name}.png`, png: true } : { file: `${c.name}.svg`, png: false };
}
