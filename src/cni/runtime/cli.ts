/**
 * `berth cni add|check|del|gc|status|validate|ls NET [NETNS] [flags]` - Berth's CNI
 * runtime on the command line, with cnitool's habits: CNI_PATH, NETCONFPATH,
 * CNI_ARGS, CAP_ARGS, CNI_IFNAME and CNI_CONTAINERID from the environment,
 * overridable by flags. It runs the plugins in the namespace it runs in.
 */
import { createHash } from "node:crypto";
import { CNI_ERR, cniError, toCniError } from "../errors.ts";
import { DEFAULT_CACHE_DIR } from "./cache.ts";
import { listNetworks, loadConfList } from "./conflist.ts";
import { CniRuntime, parseArgs, type RuntimeConf, type ValidAttachment } from "./runtime.ts";

export const CNI_USAGE = `usage: berth cni COMMAND NET [NETNS] [flags]
commands:
  add NET NETNS      attach NETNS to network NET (prints the result)
  check NET NETNS    verify an attachment (CHECK through the chain)
  del NET NETNS      detach (DEL in reverse order with the cached result)
  gc NET             DEL cached attachments not listed in --valid, then GC every plugin
  status NET         STATUS of every plugin (cniVersion >= 1.1.0)
  validate NET       negotiate the version with the plugins, print it and the capabilities
  ls                 list the networks in the config dir
flags:
  --ifname NAME          interface in the container (env CNI_IFNAME, default eth0)
  --container-id ID      (env CNI_CONTAINERID; default derived from NETNS like cnitool)
  --args K=V;K2=V2       CNI_ARGS (env CNI_ARGS)
  --cap-args JSON        capability arguments, e.g. '{"portMappings":[...]}' (env CAP_ARGS)
  --conf-dir DIR         network configs (env NETCONFPATH, default /etc/cni/net.d)
  --cache-dir DIR        result cache (env CNI_CACHE_DIR, default ${DEFAULT_CACHE_DIR})
  --path DIR:DIR         plugin directories (env CNI_PATH, default /opt/cni/bin:/usr/lib/cni)
  --valid ID/IF,...      gc: the attachments that are still in use
NETNS is a path or a name under /run/netns.`;

interface Flags {
  ifname?: string;
  containerId?: string;
  args?: string;
  capArgs?: string;
  confDir?: string;
  cacheDir?: string;
  path?: string;
  valid?: string;
}

const FLAG_KEYS: Record<string, keyof Flags> = {
  "--ifname": "ifname",
  "--container-id": "containerId",
  "--args": "args",
  "--cap-args": "capArgs",
  "--conf-dir": "confDir",
  "--cache-dir": "cacheDir",
  "--path": "path",
  "--valid": "valid",
};

function parseFlags(argv: string[]): { pos: string[]; flags: Flags } {
  const pos: string[] = [];
  const flags: Flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq > 0 ? a.slice(0, eq) : a;
      const key = FLAG_KEYS[name];
      if (!key) throw cniError(CNI_ERR.invalidConfig, `unknown flag ${name}`);
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw cniError(CNI_ERR.invalidConfig, `flag ${name} needs a value`);
      flags[key] = v;
    } else pos.push(a);
  }
  return { pos, flags };
}

function netnsPath(ns: string): string {
  return ns.startsWith("/") ? ns : `/run/netns/${ns}`;
}

/** cnitool derives the container ID from the netns path; so does Berth. */
export function containerIdFor(netns: string): string {
  return `berth-${createHash("sha512").update(netns).digest("hex").slice(0, 20)}`;
}

function parseValid(s: string | undefined): ValidAttachment[] {
  if (!s) return [];
  return s
    .split(",")
    .filter(Boolean)
    .map((x) => {
      const [containerID, ifname = "eth0"] = x.split("/");
      if (!containerID) throw cniError(CNI_ERR.invalidConfig, `--valid: invalid attachment ${JSON.stringify(x)} (want ID/IFNAME)`);
      return { containerID, ifname };
    });
}

export async function cniCommand(argv: string[], out: (line: string) => void = (l) => console.log(l), env: Record<string, string | undefined> = process.env): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    out(CNI_USAGE);
    return cmd === undefined ? 1 : 0;
  }
  try {
    const { pos, flags } = parseFlags(rest);
    const confDir = flags.confDir ?? env.NETCONFPATH ?? "/etc/cni/net.d";
    const cacheDir = flags.cacheDir ?? env.CNI_CACHE_DIR ?? DEFAULT_CACHE_DIR;
    const path = (flags.path ?? env.CNI_PATH ?? "/opt/cni/bin:/usr/lib/cni").split(":").filter(Boolean);
    const rtm = new CniRuntime({ path, cacheDir });
    if (cmd === "ls") {
      for (const l of listNetworks(confDir)) out(`${l.name}\t${l.cniVersion || l.cniVersions.join(",")}\t${l.plugins.map((p) => p.type).join(",")}\t${l.source}`);
      return 0;
    }
    const [net, ns] = pos;
    if (!net) throw cniError(CNI_ERR.invalidConfig, `berth cni ${cmd}: missing network name\n${CNI_USAGE}`);
    const list = loadConfList(confDir, net);
    const rtFor = (): RuntimeConf => {
      if (!ns) throw cniError(CNI_ERR.invalidEnv, `berth cni ${cmd}: missing NETNS`);
      const netns = netnsPath(ns);
      let capabilityArgs: Record<string, unknown> = {};
      const capText = flags.capArgs ?? env.CAP_ARGS;
      if (capText) {
        try {
          capabilityArgs = JSON.parse(capText) as Record<string, unknown>;
        } catch (e) {
          throw cniError(CNI_ERR.decodeFailure, `--cap-args: invalid JSON: ${(e as Error).message}`);
        }
        if (!capabilityArgs || typeof capabilityArgs !== "object" || Array.isArray(capabilityArgs)) {
          throw cniError(CNI_ERR.decodeFailure, "--cap-args must be a JSON object");
        }
      }
      return {
        containerId: flags.containerId ?? env.CNI_CONTAINERID ?? containerIdFor(netns),
        netns,
        ifname: flags.ifname ?? env.CNI_IFNAME ?? "eth0",
        args: parseArgs(flags.args ?? env.CNI_ARGS ?? ""),
        capabilityArgs,
      };
    };
    switch (cmd) {
      case "add":
        out(JSON.stringify(await rtm.add(list, rtFor()), null, 2));
        return 0;
      case "check":
        await rtm.check(list, rtFor());
        return 0;
      case "del":
        await rtm.del(list, rtFor());
        return 0;
      case "gc": {
        const r = await rtm.gc(list, parseValid(flags.valid));
        for (const d of r.deleted) out(`deleted ${d}`);
        return 0;
      }
      case "status":
        await rtm.status(list);
        return 0;
      case "validate": {
        const v = await rtm.validate(list);
        out(JSON.stringify(v));
        return 0;
      }
      default:
        throw cniError(CNI_ERR.invalidConfig, `berth cni: unknown command ${JSON.stringify(cmd)}\n${CNI_USAGE}`);
    }
  } catch (e) {
    const ce = toCniError(e);
    console.error(`berth cni ${cmd}: ${ce.message}${ce.details ? ` (${ce.details})` : ""} [CNI error ${ce.code}]`);
    return 1;
  }
}
