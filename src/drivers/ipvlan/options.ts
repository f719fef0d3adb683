/**
 * Ipvlan network options, with Docker's keys (`parent`, `ipvlan_mode`,
 * `ipvlan_flag`). Unknown keys are refused.
 */
import { IPVLAN_FLAGS, IPVLAN_MODES, type IpvlanFlag, type IpvlanMode } from "../../dataplane/ipbatch.ts";
import { OPT_PARENT, oneOf, parentOption, rejectUnknownOptions } from "../lowerdev.ts";

export const OPT_IPVLAN_MODE = "ipvlan_mode";
export const OPT_IPVLAN_FLAG = "ipvlan_flag";
export const IPVLAN_KEYS = [OPT_PARENT, OPT_IPVLAN_MODE, OPT_IPVLAN_FLAG] as const;

export interface IpvlanOptions {
  /** undefined: Berth creates a dummy parent (an isolated network). */
  parent: string | undefined;
  mode: IpvlanMode;
  flag: IpvlanFlag;
}

export function parseIpvlanOptions(options: Record<string, string>): IpvlanOptions {
  rejectUnknownOptions("ipvlan", options, IPVLAN_KEYS);
  return {
    parent: parentOption(options),
    mode: oneOf("ipvlan", options, OPT_IPVLAN_MODE, IPVLAN_MODES, "l2"),
    flag: oneOf("ipvlan", options, OPT_IPVLAN_FLAG, IPVLAN_FLAGS, "bridge"),
  };
}
