/**
 * The /etc/resolv.conf a container sees: the embedded resolver as its only
 * nameserver, the host's search domains and options, and `ndots:0` unless the
 * host sets ndots (like Docker, so single-label container names are asked as is).
 */
import type { HostResolvConf } from "./upstream.ts";

export function renderResolvConf(resolver: string, host: Pick<HostResolvConf, "search" | "options">, containerName?: string): string {
  const lines = [
    `# Written by Berth${containerName ? ` for container ${containerName}` : ""}: ${resolver} is Berth's embedded resolver.`,
    "# It answers the names and aliases of containers on this container's networks and forwards other names to the host's servers.",
    `nameserver ${resolver}`,
  ];
  if (host.search.length > 0) lines.push(`search ${host.search.join(" ")}`);
  const options = host.options.filter((o) => o !== "");
  if (!options.some((o) => o.startsWith("ndots:"))) options.push("ndots:0");
  lines.push(`options ${options.join(" ")}`);
  return `${lines.join("\n")}\n`;
}
