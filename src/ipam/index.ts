export {
  type AllocateRequest,
  type Allocation,
  Ipam,
  type IpamOptions,
  type PoolsRequest,
  type PoolReservation,
  type PoolUsage,
  type ReservePoolRequest,
} from "./ipam.ts";
export { type DefaultPool, type DefaultPoolSpec, DOCKER_DEFAULT_POOLS, ulaPool } from "./defaults.ts";
export { defaultGateway, edgeReservations, OVERLAP_MESSAGE, type ParsedSpec, type PoolSpec, reservedAddresses } from "./pools.ts";
export { nextFree, type TakenLookup } from "./allocator.ts";
