/** berthd entry point: `berthd [--socket P] [--state-dir D] [--host-netns NS] ...` */
import { parseArgs } from "node:util";
import { asBerthError } from "../errors.ts";
import { Daemon, type DaemonConfig, DEFAULT_CONFIG } from "./daemon.ts";
import { parseUpstream } from "../dns/upstream.ts";

export async function berthdMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: "string" },
      "state-dir": { type: "string" },
      "host-netns": { type: "string" },
      "netns-prefix": { type: "string" },
      "cgroup-parent": { type: "string" },
      "default-pool": { type: "string", multiple: true },
      "reconcile-interval": { type: "string" },
      "plugin-socket": { type: "string" },
      "dns-upstream": { type: "string", multiple: true },
      "cni-oplog": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(`usage: berthd [--socket PATH] [--state-dir DIR] [--host-netns NS] [--netns-prefix P] [--cgroup-parent NAME] [--default-pool BASE/LEN:SIZE ...] [--plugin-socket PATH]
  --socket        API socket (default ${DEFAULT_CONFIG.socket})
  --state-dir     state directory (default ${DEFAULT_CONFIG.stateDir})
  --host-netns    run Berth's host side inside this named netns instead of the daemon's own
  --default-pool  address pool for automatic subnets, e.g. 10.99.0.0/16:24 (repeatable)
  --reconcile-interval  ms between checks that repair drift (default 1000; 0 = only at start)
  --plugin-socket PATH  Docker remote network + IPAM plugin socket (default ${DEFAULT_CONFIG.pluginSocket};
                  "" = off). dockerd must share Berth's host network namespace to use it.
  --dns-upstream IP[:PORT]  upstream server for the embedded DNS resolver (repeatable, tried in order;
                  default: the nameservers of /etc/resolv.conf, loopback ones skipped)
  --cni-oplog PATH  the CNI plugins' operation log, read for /metrics (default /run/berth/cni-ops.log,
                  the plugins' default too; set BERTH_CNI_OPLOG for them to match; "" = off)`);
    return 0;
  }
  const config: DaemonConfig = {
    socket: values.socket ?? DEFAULT_CONFIG.socket,
    stateDir: values["state-dir"] ?? DEFAULT_CONFIG.stateDir,
    hostNetns: values["host-netns"] ?? null,
    netnsPrefix: values["netns-prefix"] ?? DEFAULT_CONFIG.netnsPrefix,
    cgroupParent: values["cgroup-parent"] ?? DEFAULT_CONFIG.cgroupParent,
    pluginSocket: values["plugin-socket"] ?? DEFAULT_CONFIG.pluginSocket ?? null,
  };
  if (values["cni-oplog"] !== undefined) config.cniOplog = values["cni-oplog"] || null;
  if (values["dns-upstream"]) {
    try {
      for (const u of values["dns-upstream"]) parseUpstream(u, "dns-upstream");
    } catch (e) {
      console.error(`berthd: --dns-upstream: ${asBerthError(e).message}`);
      return 2;
    }
    config.dnsUpstreams = values["dns-upstream"];
  }
  if (values["reconcile-interval"] !== undefined) {
    const ms = Number(values["reconcile-interval"]);
    if (!Number.isInteger(ms) || ms < 0) {
      console.error(`berthd: --reconcile-interval must be a whole number of milliseconds (got ${values["reconcile-interval"]})`);
      return 2;
    }
    config.reconcileIntervalMs = ms;
  }
  if (values["default-pool"]) {
    config.defaultPools = values["default-pool"].map((s) => {
      const [base, size] = s.split(":");
      return { base: base ?? "", size: Number(size) };
    });
  }
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config);
  } catch (e) {
    console.error(`berthd: ${asBerthError(e).message}`);
    return 1;
  }
  console.error(`berthd: listening on ${config.socket}${config.pluginSocket ? `, Docker plugin on ${config.pluginSocket}` : ""}`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  await daemon.stop();
  return 0;
}
