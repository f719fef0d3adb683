/**
 * Macvlan network options, with Docker's keys so `docker network create -d macvlan
 * -o parent=eth0 -o macvlan_mode=bridge` works unchanged. Unknown keys are refused.
 */
import { MACVLAN_MODES, type MacvlanMode } from "../../dataplane/ipbatch.ts";
import { OPT_PARENT, oneOf, parentOption, rejectUnknownOptions } from "../lowerdev.ts";

export const OPT_MACVLAN_MODE = "macvlan_mode";
export const MACVLAN_KEYS = [OPT_PARENT, OPT_MACVLAN_MODE] as const;

export interface MacvlanOptions {
  /** undefined: Berth creates a dummy parent (an isolated network). */
  parent: string | undefined;
  mode: MacvlanMode;
}

export function parseMacvlanOptions(options: Record<string, string>): MacvlanOptions {
  rejectUnknownOptions("macvlan", options, MACVLAN_KEYS);
  return { parent: parentOption(options), mode: oneOf("macvlan", options, OPT_MACVLAN_MODE, MACVLAN_MODES, "bridge") };
}
