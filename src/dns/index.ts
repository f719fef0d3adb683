/**
 * Berth's embedded DNS: one resolver for containers of every network driver.
 * The architecture (and why) is described in README.md next to this file.
 */
export { NameTable, NO_DNS_DRIVERS, parseReverseName, reverseName } from "./names.ts";
export { handleQuery, LOCAL_TTL, RCODE } from "./packet.ts";
export { renderResolvConf } from "./resolvconf.ts";
export { DnsService, type DnsServiceOptions, type DnsStats, RESOLVER_ADDRESS } from "./server.ts";
export type { DnsCounters } from "./stats.ts";
export { Forwarder, formatUpstream, parseResolvConf, parseUpstream, readHostResolvConf, type Upstream } from "./upstream.ts";
