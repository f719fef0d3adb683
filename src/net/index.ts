/** Berth's network value types: parsed, immutable, with clear "invalid" errors. */
export { type Family, IP } from "./ip.ts";
export { IPNet } from "./ipnet.ts";
export { MAC } from "./mac.ts";
export {
  formatPortMapping,
  type PortMapping,
  PROTOCOLS,
  parsePort,
  parsePortMapping,
  parsePortMappings,
  type Protocol,
  validateContainerId,
  validateDnsLabel,
  validateIfName,
  validateNetworkName,
} from "./names.ts";
export { Prefix } from "./prefix.ts";
