/** The API's JSON shapes the UI reads (Docker's network JSON, Berth's container and view JSON). */

export interface PoolConfig {
  Subnet: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

export interface PoolUse {
  Subnet: string;
  Size: number;
  Allocated: number;
  Reserved: number;
}

export interface NetworkEndpoint {
  Name: string;
  EndpointID: string;
  MacAddress: string;
  IPv4Address: string;
  IPv6Address: string;
}

export interface NetworkJson {
  Name: string;
  Id: string;
  Created: string;
  Scope: string;
  Driver: string;
  EnableIPv6: boolean;
  Internal: boolean;
  Attachable: boolean;
  IPAM: { Driver: string; Options: Record<string, string> | null; Config: PoolConfig[] };
  Containers: Record<string, NetworkEndpoint>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  IPAMUtilisation: PoolUse[];
  BerthDriverState?: Record<string, unknown>;
}

export interface PortJson {
  HostIp: string;
  HostPort: number;
  ContainerPort: number;
  Protocol: string;
}

export interface AttachmentJson {
  NetworkID: string;
  EndpointID: string;
  Ifname: string;
  MacAddress: string;
  Addresses: string[];
  Gateways: string[];
  Ports: PortJson[];
  Aliases: string[];
}

export interface ContainerLimits {
  memoryBytes?: number;
  cpus?: number;
  pids?: number;
  ingressRate?: number;
  egressRate?: number;
  ingressBurst?: number;
  egressBurst?: number;
}

export interface ContainerJson {
  Id: string;
  Name: string;
  Command: string[];
  State: string;
  ExitCode: number | null;
  Pid: number | null;
  Created: string;
  NetnsName: string;
  Limits: ContainerLimits;
  Labels: Record<string, string>;
  Networks: AttachmentJson[];
}

export interface Topology {
  Host: { Name: string; Netns: string };
  Networks: NetworkJson[];
  Containers: ContainerJson[];
}

export interface InterfacesJson {
  Id: string;
  Name: string;
  Netns: string;
  Interfaces: { Name: string; Kind: string; Mtu: number; MacAddress: string; Up: boolean; OperState: string; Addresses: { Address: string; Scope: string }[] }[];
  Routes: { Family: number; Destination: string; Gateway: string; Device: string }[];
}

export interface FirewallJson {
  Family: string;
  Name: string;
  Comment: string;
  Sets: { Name: string; Kind: "set" | "map"; Type: string; Flags: string[]; Elements: string[] }[];
  Chains: { Name: string; Base: string; Rules: string[] }[];
  Text: string;
  Kernel: { Present: boolean; Rules: number; Elements: Record<string, number> };
}

export interface TraceJson {
  verdict: "allowed" | "dropped";
  reason: string;
  steps: { at: string; note: string }[];
}

export interface DnsName {
  name: string;
  networkId: string;
  containerId: string;
  address: string;
}

export interface BerthEvent {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  time: number;
}
