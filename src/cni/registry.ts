/**
 * Berth's CNI plugins by the reference names they replace. Modules load lazily
 * so a plugin process only pays for the plugin it runs.
 */
import type { CniPlugin } from "./skel.ts";

type Loader = () => Promise<CniPlugin>;

const PLUGINS: Record<string, Loader> = {
  loopback: () => import("./plugins/loopback.ts").then((m) => m.plugin),
  "host-local": () => import("./plugins/host-local.ts").then((m) => m.plugin),
  static: () => import("./plugins/static.ts").then((m) => m.plugin),
  bridge: () => import("./plugins/bridge.ts").then((m) => m.plugin),
  ptp: () => import("./plugins/ptp.ts").then((m) => m.plugin),
  macvlan: () => import("./plugins/macvlan.ts").then((m) => m.plugin),
  ipvlan: () => import("./plugins/ipvlan.ts").then((m) => m.plugin),
  tuning: () => import("./plugins/tuning.ts").then((m) => m.plugin),
  portmap: () => import("./plugins/portmap.ts").then((m) => m.plugin),
  bandwidth: () => import("./plugins/bandwidth.ts").then((m) => m.plugin),
  firewall: () => import("./plugins/firewall.ts").then((m) => m.plugin),
  overlay: () => import("./plugins/overlay.ts").then((m) => m.plugin),
};

export const PLUGIN_NAMES = Object.keys(PLUGINS);

export async function loadPlugin(type: string): Promise<CniPlugin | undefined> {
  const l = PLUGINS[type];
  return l ? l() : undefined;
}
