/** @jsxImportSource preact */
/**
 * The topology graph (cytoscape): host, networks coloured by driver, containers
 * with their interfaces and published ports. Elements come from graph-model.ts;
 * on every new snapshot the graph is replaced in place (positions are computed,
 * so nothing jumps around) and the view refitted.
 */
import cytoscape, { type Core } from "cytoscape";
import { useEffect, useRef } from "preact/hooks";
import { buildGraph, ctrNodeId, netNodeId, type NodeKind } from "./graph-model.ts";
import type { Topology } from "./types.ts";

export interface Selection {
  kind: "network" | "container";
  id: string;
}

const STYLE: cytoscape.StylesheetJson = [
  {
    selector: "node",
    style: { label: "data(label)", "font-family": "system-ui, sans-serif", "font-size": 11, "text-wrap": "wrap", color: "#0f172a" },
  },
  {
    selector: 'node[kind = "host"]',
    style: {
      "background-color": "#f1f5f9",
      "border-color": "#94a3b8",
      "border-width": 1,
      shape: "round-rectangle",
      "text-valign": "top",
      "text-halign": "center",
      "font-weight": "bold",
      "font-size": 12,
      padding: "18px",
    },
  },
  {
    selector: 'node[kind = "network"]',
    style: {
      shape: "round-rectangle",
      width: 150,
      height: 44,
      "background-color": "data(colour)",
      color: "#ffffff",
      "text-valign": "center",
      "text-halign": "center",
      "font-weight": "bold",
    },
  },
  { selector: 'node[kind = "network"][?internal]', style: { "border-width": 3, "border-style": "dashed", "border-color": "#0f172a" } },
  {
    selector: 'node[kind = "container"]',
    style: {
      shape: "round-rectangle",
      "background-color": "#ffffff",
      "border-width": 2,
      "border-color": "#16a34a",
      "text-valign": "top",
      "text-halign": "center",
      "font-weight": "bold",
      padding: "14px",
    },
  },
  { selector: 'node[kind = "container"][state != "running"]', style: { "border-color": "#94a3b8", "border-style": "dashed" } },
  {
    selector: 'node[kind = "interface"]',
    style: {
      shape: "ellipse",
      width: 16,
      height: 16,
      "background-color": "#0f172a",
      "text-valign": "bottom",
      "text-margin-y": 4,
      "font-size": 10,
    },
  },
  {
    selector: 'node[kind = "port"]',
    style: {
      shape: "tag",
      width: 104,
      height: 20,
      "background-color": "#fef3c7",
      "border-color": "#d97706",
      "border-width": 1,
      "text-valign": "center",
      "font-size": 10,
    },
  },
  { selector: "edge", style: { width: 2, "line-color": "data(colour)", "curve-style": "bezier" } },
  { selector: "node:selected", style: { "overlay-color": "#f59e0b", "overlay-opacity": 0.25, "overlay-padding": 6 } },
];

declare global {
  interface Window {
    /** The graph, for people poking at it from the devtools console (and the browser test). */
    berthGraph?: Core;
  }
}

export function TopologyGraph(props: { topology: Topology | undefined; selected: Selection | undefined; onSelect: (s: Selection | undefined) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | undefined>(undefined);
  const onSelect = useRef(props.onSelect);
  onSelect.current = props.onSelect;

  useEffect(() => {
    if (!box.current) return;
    const c = cytoscape({ container: box.current, style: STYLE, layout: { name: "preset" }, minZoom: 0.2, maxZoom: 2.5, autoungrabify: true });
    c.on("tap", "node", (ev) => {
      const d = ev.target.data() as { kind: NodeKind; ref: string };
      if (d.kind === "network") onSelect.current({ kind: "network", id: d.ref });
      else if (d.kind === "container" || d.kind === "interface" || d.kind === "port") onSelect.current({ kind: "container", id: d.ref });
    });
    cy.current = c;
    window.berthGraph = c;
    return () => {
      c.destroy();
      cy.current = undefined;
    };
  }, []);

  useEffect(() => {
    const c = cy.current;
    if (!c || !props.topology) return;
    const g = buildGraph(props.topology);
    c.batch(() => {
      c.elements().remove();
      c.add([...g.nodes, ...g.edges]);
    });
    c.fit(undefined, 30);
    box.current?.setAttribute("data-nodes", String(c.nodes().length));
  }, [props.topology]);

  // the selected network or container is highlighted in the graph
  useEffect(() => {
    const c = cy.current;
    if (!c) return;
    c.nodes(":selected").unselect();
    const s = props.selected;
    if (s) c.getElementById(s.kind === "network" ? netNodeId(s.id) : ctrNodeId(s.id)).select();
  }, [props.selected, props.topology]);

  return <div class="graph" ref={box} data-testid="topology" role="img" aria-label="network topology graph" />;
}
