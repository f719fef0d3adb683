/** `berth` CLI entry: global flags, then the command. */
import { asBerthError } from "../errors.ts";
import { Client, DEFAULT_SOCKET } from "./client.ts";
import {
  eventsCommand,
  execCommand,
  inspectCommand,
  logsCommand,
  networkCommand,
  psCommand,
  rmCommand,
  runCommand,
  statsCommand,
  traceCommand,
} from "./commands.ts";
import { demoCommand } from "./demo.ts";

const USAGE = `usage: berth [--socket PATH] COMMAND
commands:
  network create|ls|inspect|rm|prune|connect|disconnect   manage networks
  run [-d] [--rm] [--network N] [--name X] [-p H:C[/proto]] [--memory M] [--cpus C] [--pids P]
      [--ingress-rate 20mbit] [--egress-rate 10mbit] [--] CMD...
  ps [-a]          list containers
  rm [-f] C...     remove containers
  exec C [--] CMD  run a command in a container's network namespace and cgroup
  logs C           print a container's output
  inspect C...     show a container as JSON
  stats [--no-stream] [C...]  CPU, memory, pids, block and network I/O per container (live)
  events [--since T] [--filter type=network]  the event stream
  trace SRC DST PORT[/proto]  explain whether SRC can connect to DST, from Berth's state and rules
  demo             start a sandboxed Berth, wire containers, print a connectivity matrix
  cni add|check|del|gc|status NET [NETNS] [flags]   run a CNI network list (like cnitool; no daemon needed)
environment: BERTH_SOCKET (default ${DEFAULT_SOCKET})`;

export async function berthMain(argv: string[]): Promise<number> {
  let socket = process.env.BERTH_SOCKET ?? DEFAULT_SOCKET;
  while (argv[0]?.startsWith("--socket")) {
    const a = argv.shift()!;
    socket = a.includes("=") ? a.slice(a.indexOf("=") + 1) : (argv.shift() ?? "");
  }
  const [cmd, ...rest] = argv;
  const c = new Client(socket);
  const out = (l: string) => console.log(l);
  try {
    switch (cmd) {
      case "network":
        return await networkCommand(c, rest, out);
      case "run":
        return await runCommand(c, rest, out);
      case "ps":
        return await psCommand(c, rest, out);
      case "rm":
        return await rmCommand(c, rest, out);
      case "exec":
        return await execCommand(c, rest);
      case "logs":
        return await logsCommand(c, rest);
      case "inspect":
        return await inspectCommand(c, rest, out);
      case "stats":
        return await statsCommand(c, rest, out);
      case "events":
        return await eventsCommand(c, rest, out);
      case "trace":
        return await traceCommand(c, rest, out);
      case "demo":
        return await demoCommand(rest);
      case "cni": {
        // lazy: the CNI runtime needs neither the API client nor the daemon
        const { cniCommand } = await import("../cni/runtime/cli.ts");
        return await cniCommand(rest, out);
      }
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return cmd === undefined ? 1 : 0;
      default:
        console.error(`berth: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
        return 1;
    }
  } catch (e) {
    const be = asBerthError(e);
    console.error(`Error: ${be.message}`);
    return be.kind === "invalid" ? 2 : 1;
  }
}
