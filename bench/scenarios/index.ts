/**
 * The benchmark scenarios, in the order they run. Each is one module exporting a
 * `Scenario` (id, title, optional `unavailable` check, run); adding one is one
 * import here. `bun bench/run.ts --only ID,...` picks some.
 */
import type { Scenario } from "../lib/types.ts";
import { berthdScenario } from "./berthd.ts";
import { cniScenario } from "./cni.ts";
import { dataplaneScenario } from "./dataplane.ts";
import { dnsScenario } from "./dns.ts";
import { netavarkScenario } from "./netavark.ts";
import { portsScenario } from "./ports.ts";

export const SCENARIOS: Scenario[] = [cniScenario, berthdScenario, netavarkScenario, portsScenario, dataplaneScenario, dnsScenario];
