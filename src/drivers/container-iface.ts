/**
 * What every driver does to the container's interface before it comes up.
 *
 * An endpoint without an IPv6 address gets IPv6 turned off on its interface, as
 * Docker does (net.ipv6.conf.<if>.disable_ipv6=1): a network without IPv6 carries
 * none, not even link-local. It is also what keeps attaching flat: an interface with
 * IPv6 on sends duplicate-address detection, MLD reports and router solicitations as
 * it comes up, and a bridge floods each of them to every port (with 1000 containers on
 * a bridge, the 1000th connect's multicast reaches 999 other containers).
 */
import type { Dataplane } from "../dataplane/dataplane.ts";
import type { EndpointRecord } from "../store/types.ts";

/** Before the interface `name` (its current name in `netns`) comes up. */
export async function prepareContainerInterface(dp: Dataplane, netns: string, name: string, ep: EndpointRecord): Promise<void> {
  if (ep.addresses.some((a) => a.ip.family === 6)) return;
  // a kernel or namespace without IPv6 has no such sysctl: nothing to turn off
  if (!dp.ipv6Available()) return;
  await dp.sysctlSet(netns, { [`net.ipv6.conf.${name.replaceAll(".", "/")}.disable_ipv6`]: 1 });
}
