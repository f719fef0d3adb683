/**
 * Fuzzing untrusted inputs (issue "Reliability", part 3), with fast-check:
 *  (a) CNI configs + environments through runPlugin (in-process) for loopback,
 *      host-local, bridge and portmap: exit 1 with a valid CNI error JSON of a
 *      known code, or a VERSION answer; never a throw. Every generated call fails
 *      in the skeleton (bad env, a netns that does not exist, a config the skeleton
 *      refuses), so nothing reaches the kernel: Bun.spawn/spawnSync are trapped
 *      while the plugins run and any call fails the test.
 *  (b) Docker/Berth API bodies through the pure router: 4xx with a message,
 *      never 5xx; store, links of Berth's host namespace and its nft ruleset unchanged.
 *  (c) DNS packets (random bytes, mutated valid queries) through handleQuery:
 *      no throw; a reply is a decodable DNS response to the same id.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import * as dnsPacket from "dns-packet";
import fc from "fast-check";
import { route } from "../../src/api/router.ts";
import { CNI_ERR } from "../../src/cni/errors.ts";
import { loadPlugin } from "../../src/cni/registry.ts";
import { type CniPlugin, runPlugin } from "../../src/cni/skel.ts";
import { SUPPORTED_VERSIONS } from "../../src/cni/version.ts";
import { NameTable } from "../../src/dns/names.ts";
import { handleQuery, type QueryContext } from "../../src/dns/packet.ts";
import { ep, net, query } from "../fixtures/dns-helpers.ts";
import { createTestBerth, type TestBerth } from "../harness/berth.ts";
import { assertRootUntouched } from "../harness/sandbox.ts";

assertRootUntouched();

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const params = (numRuns: number) => ({ numRuns, seed: SEED, endOnFailure: true });
console.log(`fuzz seed ${SEED} (FUZZ_SEED=${SEED} to replay)`);

// ---------------------------------------------------------------- (a) CNI

const KNOWN_CODES = new Set<number>(Object.values(CNI_ERR));
const VERBS = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] as const;

/** Namespace paths that are surely no network namespace (and never the root's). */
const badNetns = fc.oneof(
  fc.constantFrom("", "relative/ns", "/nonexistent/bt-fuzz", "/run/netns/bt-fuzz-missing-ns", "/etc/hostname", "/tmp", "/ with space", "/dev/null"),
  fc.string({ maxLength: 40 }).map((s) => `/nonexistent/${s}`),
  fc.string({ maxLength: 20 }),
);
const junk = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom("eth0", "ctr-1", "../x", "a;b", "x".repeat(300), "\u0000", "é"));

/** A plausible config of the plugin (the base that mutations break). */
function baseConf(plugin: string): Record<string, unknown> {
  const ipam = { type: "host-local", dataDir: "/nonexistent/bt-fuzz-data", subnet: "10.66.0.0/24" };
  switch (plugin) {
    case "bridge":
      return { cniVersion: "1.0.0", name: "fz", type: "bridge", bridge: "brfz", isGateway: true, ipMasq: true, ipam };
    case "portmap":
      return { cniVersion: "1.0.0", name: "fz", type: "portmap", capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] } };
    case "host-local":
      return { cniVersion: "1.0.0", name: "fz", type: "host-local", ipam };
    default:
      return { cniVersion: "1.0.0", name: "fz", type: plugin };
  }
}

const anyJson = fc.jsonValue({ maxDepth: 3 });
/** Replaces/adds/removes fields with junk of any shape (may or may not stay valid). */
const mutations = fc.array(
  fc.tuple(
    fc.constantFrom("cniVersion", "name", "type", "ipam", "bridge", "mtu", "isGateway", "ipMasq", "runtimeConfig", "capabilities", "prevResult", "dns", "args", "cni.dev/valid-attachments", "hairpinMode", "vlan", "snat", "extra"),
    fc.oneof(anyJson, fc.constant(undefined), fc.constant(null), fc.string({ minLength: 5000, maxLength: 20000 })),
  ),
  { maxLength: 4 },
);
/** One change that the skeleton must refuse whatever else the config holds. */
type Conf = Record<string, unknown>;
const skelBreaker: fc.Arbitrary<(c: Conf) => Conf | string> = fc.oneof<fc.Arbitrary<(c: Conf) => Conf | string>[]>(
  fc.string({ maxLength: 20 }).filter((v) => !(SUPPORTED_VERSIONS as readonly string[]).includes(v)).map((v) => (c: Conf) => ({ ...c, cniVersion: v })),
  fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string())).map((v) => (c: Conf) => ({ ...c, cniVersion: v })),
  fc.oneof(fc.constant(""), fc.string().map((s) => `-${s}`), fc.string().map((s) => `a b${s}`), fc.integer(), fc.constant(null)).map((v) => (c: Conf) => ({ ...c, name: v })),
  fc.oneof(fc.constant(""), fc.string().map((s) => `../${s}`), fc.integer(), fc.constant(null)).map((v) => (c: Conf) => ({ ...c, type: v })),
  fc.oneof(fc.string({ maxLength: 200 }), fc.constantFrom("", "{", "[]", "null", "42", '"str"', "{\"a\":}", "\u0000")).map(
    (t) => (_c: Conf) => (isJsonObject(t) ? "[1]" : t),
  ),
);
function isJsonObject(t: string): boolean {
  try {
    const v = JSON.parse(t);
    return v !== null && typeof v === "object" && !Array.isArray(v);
  } catch {
    return false;
  }
}

interface CniCase {
  env: Record<string, string | undefined>;
  stdin: string;
}

/** Env + stdin whose call cannot reach a plugin's kernel code. */
function cniCase(plugin: string): fc.Arbitrary<CniCase> {
  return fc
    .record({
      command: fc.oneof(fc.constantFrom(...VERBS), fc.constantFrom("add", "", "DELETE", "version", " ADD"), fc.string({ maxLength: 8 })),
      containerId: fc.option(fc.oneof(fc.constant("ctr1"), junk), { nil: undefined }),
      ifname: fc.option(fc.oneof(fc.constant("eth0"), junk), { nil: undefined }),
      netns: fc.option(badNetns, { nil: undefined }),
      args: fc.option(fc.oneof(fc.constantFrom("IgnoreUnknown=1", "IP=10.66.0.9", "K8S_POD_NAME=x;IgnoreUnknown=true", "=", ";;", "IP"), junk), { nil: undefined }),
      path: fc.option(fc.oneof(fc.constant("/nonexistent/bin"), junk), { nil: undefined }),
      muts: mutations,
      breaker: skelBreaker,
      breakAlways: fc.boolean(),
      rawText: fc.option(fc.string({ maxLength: 200 }), { nil: undefined, freq: 8 }),
    })
    .map((g) => {
      const conf: Record<string, unknown> = baseConf(plugin);
      for (const [k, v] of g.muts) {
        if (v === undefined) delete conf[k];
        else conf[k] = v;
      }
      // ADD and CHECK always fail on the netns (never a real namespace); every other verb but VERSION
      // must fail in the skeleton: its config is broken on purpose
      const verb = g.command;
      const needsBreak = verb !== "ADD" && verb !== "CHECK" && verb !== "VERSION";
      let stdin: string;
      if (g.rawText !== undefined && (!needsBreak || !isJsonObject(g.rawText))) stdin = g.rawText;
      else if (needsBreak || g.breakAlways) {
        const b = g.breaker(conf);
        stdin = typeof b === "string" ? b : JSON.stringify(b);
      } else stdin = JSON.stringify(conf);
      const env: Record<string, string | undefined> = { CNI_COMMAND: g.command || undefined };
      if (g.containerId !== undefined) env.CNI_CONTAINERID = g.containerId;
      if (g.ifname !== undefined) env.CNI_IFNAME = g.ifname;
      env.CNI_NETNS = g.netns;
      if (g.args !== undefined) env.CNI_ARGS = g.args;
      if (g.path !== undefined) env.CNI_PATH = g.path;
      return { env, stdin };
    });
}

function checkCniAnswer(c: CniCase, out: { stdout: string; exitCode: number }): void {
  const ctx = () => `env=${JSON.stringify(c.env)} stdin=${c.stdin.slice(0, 300)} -> ${out.exitCode} ${out.stdout.slice(0, 400)}`;
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(out.stdout);
  } catch {
    throw new Error(`stdout is not JSON: ${ctx()}`);
  }
  if (out.exitCode === 0) {
    if (c.env.CNI_COMMAND !== "VERSION") throw new Error(`success for a call that must fail: ${ctx()}`);
    if (typeof j.cniVersion !== "string" || !Array.isArray(j.supportedVersions)) throw new Error(`bad VERSION answer: ${ctx()}`);
    return;
  }
  if (out.exitCode !== 1) throw new Error(`exit code ${out.exitCode}: ${ctx()}`);
  if (typeof j.code !== "number" || !KNOWN_CODES.has(j.code)) throw new Error(`unknown error code: ${ctx()}`);
  if (j.code === CNI_ERR.internal) throw new Error(`internal error (an unexpected exception): ${ctx()}`);
  if (typeof j.msg !== "string" || j.msg === "") throw new Error(`no msg: ${ctx()}`);
  if (typeof j.cniVersion !== "string" || !(SUPPORTED_VERSIONS as readonly string[]).includes(j.cniVersion)) throw new Error(`bad cniVersion: ${ctx()}`);
  if (j.details !== undefined && typeof j.details !== "string") throw new Error(`bad details: ${ctx()}`);
}

const CNI_RUNS = 1000;
describe(`(a) CNI: ${CNI_RUNS} malformed env/config calls per plugin through runPlugin`, () => {
  const kernelCalls: string[] = [];
  let spies: { mockRestore(): void }[] = [];
  beforeAll(() => {
    // the plugins run in this process (the root namespace): any kernel access is a failure, and must not happen
    const trap = (name: string) => (argv: unknown) => {
      kernelCalls.push(`${name} ${JSON.stringify(argv)}`);
      throw new Error(`fuzz: ${name} called from a plugin`);
    };
    spies = [spyOn(Bun, "spawn").mockImplementation(trap("spawn") as never), spyOn(Bun, "spawnSync").mockImplementation(trap("spawnSync") as never)];
  });
  afterAll(() => {
    for (const s of spies) s.mockRestore();
  });

  for (const name of ["loopback", "host-local", "bridge", "portmap"]) {
    test(`${name}: ${CNI_RUNS} generated calls -> exit 1 + CNI error JSON (known code) or VERSION`, async () => {
      const plugin = (await loadPlugin(name)) as CniPlugin;
      const t0 = performance.now();
      let versions = 0;
      await fc.assert(
        fc.asyncProperty(cniCase(name), async (c) => {
          let out: { stdout: string; exitCode: number };
          try {
            out = await runPlugin(plugin, c.env, c.stdin);
          } catch (e) {
            throw new Error(`runPlugin threw ${(e as Error).stack}: env=${JSON.stringify(c.env)} stdin=${c.stdin.slice(0, 300)}`);
          }
          checkCniAnswer(c, out);
          if (out.exitCode === 0) versions++;
        }),
        params(CNI_RUNS),
      );
      expect(kernelCalls).toEqual([]);
      console.log(`(a) ${name}: ${CNI_RUNS} calls (${versions} VERSION answers) in ${Math.round(performance.now() - t0)} ms`);
    }, 60_000);
  }
});

// ---------------------------------------------------------------- (b) API

const huge = fc.string({ minLength: 10_000, maxLength: 70_000 });
const notString = fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.string(), { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 5 }), anyJson, { maxKeys: 2 }));
const notBool = fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.array(fc.boolean(), { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.boolean(), { maxKeys: 2 }));
const badCidr = fc.oneof(
  fc.constantFrom("10.0.0.0/33", "10.0.0.0/-1", "300.1.1.0/24", "10.0.0.0", "/24", "10.0.0.0/24/1", "::/129", "fd00::1::2/64", "10.0.0.0/ 24", " 10.0.0.0/24", "0x0a000000/8", "10.0.0.0/24\n"),
  // "" is no malformed value: Docker's "not set" (automatic subnet / address)
  fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(s)),
);
const unknownKey = fc.string({ minLength: 1, maxLength: 20 }).map((s) => `X-${s}`);

type Body = Record<string, unknown>;
type Breaker = (b: Body) => unknown;

/** Each breaker makes a create body invalid by itself. */
const createBreaker: fc.Arbitrary<Breaker> = fc.oneof(
  fc.tuple(unknownKey, anyJson).map(([k, v]) => (b: Body) => ({ ...b, [k]: v })),
  fc.oneof(fc.constant(undefined), fc.constant(""), fc.constant(null), notString).map((v) => (b: Body) => ({ ...b, Name: v })),
  fc.tuple(fc.constantFrom("Internal", "EnableIPv6", "EnableIPv4", "Attachable", "CheckDuplicate"), notBool).map(([k, v]) => (b: Body) => ({ ...b, [k]: v })),
  fc.tuple(fc.constantFrom("Driver", "Scope"), notString).map(([k, v]) => (b: Body) => ({ ...b, [k]: v })),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => (b: Body) => ({ ...b, Driver: `nodriver-${s}` })),
  fc.oneof(notString, fc.constant(42)).map((v) => (b: Body) => ({ ...b, Options: { "com.docker.network.driver.mtu": v } })),
  fc.oneof(fc.string(), fc.integer(), fc.constant(true)).map((v) => (b: Body) => ({ ...b, Labels: v })),
  fc.oneof(fc.string(), fc.integer(), fc.constant(true), fc.dictionary(fc.string(), fc.string(), { minKeys: 1, maxKeys: 1 })).map((v) => (b: Body) => ({ ...b, IPAM: { Config: v } })),
  badCidr.map((s) => (b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: s }] } })),
  fc.tuple(badCidr, fc.constantFrom("IPRange", "Gateway")).map(([s, k]) => (b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: "10.211.0.0/24", [k]: s }] } })),
  fc.constantFrom("10.212.0.0/24", "192.168.250.0/24").map((ip) => (b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: "10.211.0.0/24", IPRange: ip }] } })),
  fc.constantFrom("10.212.0.1", "fd00::1", "10.211.0.0", "10.211.0.255").map((gw) => (b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: "10.211.0.0/24", Gateway: gw }] } })),
  fc.tuple(unknownKey, fc.string()).map(([k, v]) => (b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: "10.211.0.0/24", [k]: v }] } })),
  fc.constant((b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: "10.123.77.0/24" }] } })).map((f) => (b: Body) => ({ ...f(b), Name: "fuzz-base" })), // duplicate name
  fc.constant((b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: "10.123.77.128/25" }] } })), // overlaps fuzz-base's pool
  fc.constantFrom(true).map(() => (b: Body) => ({ ...b, Ingress: true })),
  fc.constantFrom(true).map(() => (b: Body) => ({ ...b, ConfigOnly: true })),
  huge.map((s) => (b: Body) => ({ ...b, Name: s })),
  huge.map((s) => (b: Body) => ({ ...b, IPAM: { Config: [{ Subnet: s }] } })),
  fc.oneof(fc.string(), fc.integer(), fc.constant(true), fc.array(anyJson, { maxLength: 2 })).map((v) => (_b: Body) => v === null ? [] : v), // not an object
  fc.constantFrom("bridge", "host", "none").map((n) => (b: Body) => ({ ...b, Name: n })), // predefined
);

const runBreaker: fc.Arbitrary<Breaker> = fc.oneof(
  fc.tuple(unknownKey, anyJson).map(([k, v]) => (b: Body) => ({ ...b, [k]: v })),
  fc.oneof(notString.filter((v) => !Array.isArray(v)), fc.array(notString, { minLength: 1, maxLength: 2 })).map((v) => (b: Body) => ({ ...b, Command: v })),
  fc.oneof(fc.string(), fc.integer(), fc.dictionary(fc.string(), fc.string(), { minKeys: 1, maxKeys: 1 })).map((v) => (b: Body) => ({ ...b, Networks: v })),
  fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.constant(null), fc.array(fc.string(), { maxLength: 1 })).map((v) => (b: Body) => ({ ...b, Networks: [v] })),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => (b: Body) => ({ ...b, Networks: [{ Network: `nonet-${s}` }] })),
  fc.constant((b: Body) => ({ ...b, Networks: [{}] })),
  fc.tuple(unknownKey, anyJson).map(([k, v]) => (b: Body) => ({ ...b, Networks: [{ Network: "fuzz-base", [k]: v }] })),
  fc.oneof(badCidr, fc.constant("10.123.77.999"), fc.constant("fd00::zz")).map((v) => (b: Body) => ({ ...b, Networks: [{ Network: "fuzz-base", IPv4Address: v }] })),
  fc.constantFrom("10.9.9.9", "10.123.77.1", "10.123.77.0").map((v) => (b: Body) => ({ ...b, Networks: [{ Network: "fuzz-base", IPv4Address: v }] })), // outside / gateway / network address
  fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constantFrom("80:80/sctpx", "99999:80", "-1:80", "a:b", "1.2.3.4:80:80:80")).map((p) => (b: Body) => ({ ...b, Networks: [{ Network: "fuzz-base", Ports: [p] }] })),
  fc.oneof(fc.string({ maxLength: 20 }).map((s) => `-${s}`), fc.constant(""), fc.constant("a b"), fc.constant("x".repeat(300)), huge, fc.constant("é")).map((n) => (b: Body) => ({ ...b, Name: n === "" ? " " : n })),
  fc.tuple(fc.constantFrom("Memory", "Cpus", "Pids"), fc.oneof(fc.string(), fc.boolean(), fc.constant(-1), fc.constant(Number.NaN), fc.constant(1e308), fc.constant(-0.5))).map(([k, v]) => (b: Body) => ({ ...b, [k]: v })),
  fc.oneof(fc.string(), fc.integer(), fc.array(fc.string(), { maxLength: 2 })).map((v) => (b: Body) => ({ ...b, Labels: v })),
  fc.oneof(fc.string(), fc.integer(), fc.constant(true), fc.array(anyJson, { maxLength: 2 })).map((v) => (_b: Body) => v),
);

const connectBreaker: fc.Arbitrary<Breaker> = fc.oneof(
  fc.tuple(unknownKey, anyJson).map(([k, v]) => (b: Body) => ({ ...b, [k]: v })),
  fc.oneof(fc.constant(undefined), fc.constant(""), notString).map((v) => (b: Body) => ({ ...b, Container: v })),
  fc.string({ minLength: 1, maxLength: 30 }).map((s) => (b: Body) => ({ ...b, Container: `noctr-${s}` })),
  fc.oneof(fc.string(), fc.integer(), fc.array(anyJson, { maxLength: 1 })).map((v) => (b: Body) => ({ ...b, EndpointConfig: v })),
  fc.oneof(badCidr, notString).map((v) => (b: Body) => ({ ...b, EndpointConfig: { IPAMConfig: { IPv4Address: v } } })),
  fc.oneof(fc.string({ maxLength: 20 }), notString).map((v) => (b: Body) => ({ ...b, EndpointConfig: { MacAddress: v } })),
  fc.oneof(fc.string(), fc.array(fc.integer(), { minLength: 1, maxLength: 2 })).map((v) => (b: Body) => ({ ...b, EndpointConfig: { Aliases: v } })),
  fc.oneof(fc.string(), fc.integer(), fc.constant(true)).map((v) => (_b: Body) => v),
);


const FILTER_KEYS = ["name", "id", "driver", "label", "scope", "type", "dangling"];
/** A filters object that could be valid (only known keys, list/map values): not malformed, left out. */
function validFilterShape(f: string): boolean {
  try {
    const v = JSON.parse(f);
    return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).every((k) => FILTER_KEYS.includes(k));
  } catch {
    return false;
  }
}

interface ApiCase {
  method: string;
  path: string;
  query: string;
  body: unknown;
}

const apiCases: fc.Arbitrary<ApiCase> = fc.oneof(
  // network create: a plausible body + at least one breaker
  fc
    .record({
      base: fc.record(
        {
          Name: fc.string({ minLength: 1, maxLength: 12 }).map((s) => `fz-${s}`),
          Driver: fc.constantFrom("bridge", "macvlan", "ipvlan", "null", ""),
          Internal: fc.boolean(),
          IPAM: fc.constant({ Config: [{ Subnet: "10.211.0.0/24" }] }),
          Options: fc.dictionary(fc.constantFrom("com.docker.network.driver.mtu", "com.docker.network.bridge.name"), fc.string({ maxLength: 10 }), { maxKeys: 1 }),
        },
        { requiredKeys: ["Name"] },
      ),
      breakers: fc.array(createBreaker, { minLength: 1, maxLength: 3 }),
    })
    .map(({ base, breakers }) => ({ method: "POST", path: "/networks/create", query: "", body: breakers.reduce<unknown>((b, f) => (b && typeof b === "object" && !Array.isArray(b) ? f(b as Body) : b), base) })),
  // container run
  fc
    .record({
      breakers: fc.array(runBreaker, { minLength: 1, maxLength: 3 }),
    })
    .map(({ breakers }) => ({
      method: "POST",
      path: "/berth/containers/run",
      query: "",
      body: breakers.reduce<unknown>((b, f) => (b && typeof b === "object" && !Array.isArray(b) ? f(b as Body) : b), {
        Command: ["sleep", "60"],
        Networks: [{ Network: "fuzz-base" }],
      }),
    })),
  // connect / disconnect
  fc
    .record({
      verb: fc.constantFrom("connect", "disconnect"),
      target: fc.oneof(fc.constant("fuzz-base"), fc.string({ minLength: 1, maxLength: 20 }).map((s) => `nonet-${encodeURIComponent(s)}`)),
      breakers: fc.array(connectBreaker, { minLength: 1, maxLength: 2 }),
    })
    .map(({ verb, target, breakers }) => ({
      method: "POST",
      path: `/networks/${target}/${verb}`,
      query: "",
      body: breakers.reduce<unknown>((b, f) => (b && typeof b === "object" && !Array.isArray(b) ? f(b as Body) : b), { Container: "noctr-x" }),
    })),
  // filters, unknown ids, unknown routes
  fc.oneof(
    fc.oneof(fc.string({ maxLength: 40 }), fc.json({ maxDepth: 2 }), fc.constantFrom('{"nope":["x"]}', '{"type":["weird"]}', '{"dangling":["maybe"]}', '{"name":"x"}', "[", "null"))
      .filter((f) => f !== "" && f !== "{}" && f !== "null" && !validFilterShape(f))
      .map((f) => ({ method: "GET", path: "/networks", query: `filters=${encodeURIComponent(f)}`, body: undefined })),
    fc.oneof(fc.string({ maxLength: 40 }), fc.json({ maxDepth: 2 }))
      .filter((f) => f !== "" && f !== "{}" && f !== "null")
      .map((f) => ({ method: "POST", path: "/networks/prune", query: `filters=${encodeURIComponent(f)}`, body: undefined }))
      .filter((c) => {
        // only filters that cannot be valid: prune must not delete fuzz-base
        try {
          const v = JSON.parse(decodeURIComponent(c.query.slice(8)));
          return !(v && typeof v === "object" && !Array.isArray(v));
        } catch {
          return true;
        }
      }),
    fc.tuple(fc.constantFrom("GET", "DELETE"), fc.string({ minLength: 1, maxLength: 30 })).map(([m, s]) => ({ method: m, path: `/networks/nonet-${encodeURIComponent(s)}`, query: "", body: undefined })),
    fc.tuple(fc.constantFrom("GET", "DELETE"), fc.string({ minLength: 1, maxLength: 30 })).map(([m, s]) => ({ method: m, path: `/berth/containers/noctr-${encodeURIComponent(s)}`, query: "force=1", body: undefined })),
    fc.tuple(fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "BREW"), fc.string({ maxLength: 30 }), anyJson).map(([m, s, b]) => ({ method: m, path: `/nope/${encodeURIComponent(s)}`, query: "", body: b })),
    fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), fc.constantFrom("tcp", "udp", "icmp", "xyz")).map(([s, d, p]) => ({ method: "GET", path: "/berth/trace", query: `src=nosrc-${encodeURIComponent(s)}&dst=${encodeURIComponent(d)}&proto=${p}&port=${encodeURIComponent(s)}`, body: undefined })),
  ),
);

async function storeState(b: TestBerth): Promise<string> {
  const nets = await b.store.networks.list();
  const eps = (await Promise.all(nets.map((n) => b.store.endpoints.listByNetwork(n.id)))).flat();
  return JSON.stringify({ nets, eps, allocs: await b.store.allocations.list(), ctrs: await b.store.containers.list() });
}
function kernelState(b: TestBerth): string {
  const sh = (argv: string[]) => Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" }).stdout.toString();
  const links = (JSON.parse(sh(["ip", "-n", b.sb.host, "-j", "link", "show"]) || "[]") as { ifname: string; flags: string[] }[]).map((l) => `${l.ifname} ${l.flags.join(",")}`).sort();
  const netns = sh(["ip", "netns", "list"]).split("\n").filter((l) => l.includes(b.sb.host.slice(0, 8))).map((l) => l.split(" ")[0]).sort();
  return JSON.stringify({ links, netns, nft: sh(["ip", "netns", "exec", b.sb.host, "nft", "list", "ruleset"]) });
}

const API_RUNS = 4000;
describe(`(b) API: ${API_RUNS} malformed requests through route()`, () => {
  let b: TestBerth;
  beforeAll(async () => {
    b = await createTestBerth("fz");
    await b.ctl.createNetwork({
      name: "fuzz-base",
      driver: "bridge",
      internal: false,
      enableIPv6: false,
      enableIPv4: true,
      attachable: false,
      options: {},
      labels: {},
      ipam: { config: [{ subnet: "10.123.77.0/24" }] },
    });
  });
  afterAll(async () => {
    await b.close();
  });

  test(`${API_RUNS} generated requests -> 4xx + message, never 5xx; store and kernel unchanged`, async () => {
    const storeBefore = await storeState(b);
    const kernelBefore = kernelState(b);
    const t0 = performance.now();
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(apiCases, async (c) => {
        const req = { method: c.method, path: c.path, query: new URLSearchParams(c.query), body: c.body };
        let r: Awaited<ReturnType<typeof route>>;
        try {
          r = await route(b.ctl, b.rt, req);
        } catch (e) {
          throw new Error(`route threw ${(e as Error).stack}: ${JSON.stringify(c).slice(0, 500)}`);
        }
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        const what = () => `${c.method} ${c.path}?${c.query} ${JSON.stringify(c.body)?.slice(0, 400)} -> ${r.status} ${JSON.stringify(r.body)?.slice(0, 400)}`;
        if (r.status < 400 || r.status > 499) throw new Error(`status ${r.status}: ${what()}`);
        const msg = (r.body as { message?: unknown } | undefined)?.message;
        if (typeof msg !== "string" || msg === "") throw new Error(`no message: ${what()}`);
        const after = await storeState(b);
        if (after !== storeBefore) throw new Error(`store changed by: ${what()}`);
      }),
      params(API_RUNS),
    );
    expect(kernelState(b)).toBe(kernelBefore);
    expect(await storeState(b)).toBe(storeBefore);
    console.log(`(b) API: ${API_RUNS} requests in ${Math.round(performance.now() - t0)} ms, statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
  }, 120_000);
});

// ---------------------------------------------------------------- (c) DNS

const table = NameTable.build(
  [net("F", "front", ["10.1.0.0/16", "fd00:1::/64"]), net("B", "back", ["10.2.0.0/24"])],
  [ep("F", "a", ["web"], ["10.1.0.2/16", "fd00:1::2/64"]), ep("F", "b", ["web"], ["10.1.0.3/16"]), ep("B", "c", ["db"], ["10.2.0.4/24"])],
);
const dnsCtx = fc.record({ forward: fc.boolean(), tcp: fc.boolean() }).map((o): QueryContext => ({ table, scope: new Set(["F"]), ...o }));
const KNOWN_RCODES = new Set(["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]);

const validQuery = fc
  .record({
    name: fc.oneof(fc.constantFrom("web", "WEB", "db", "a", "b.front", "2.0.1.10.in-addr.arpa", "example.com", ".", ""), fc.domain()),
    type: fc.constantFrom("A", "AAAA", "PTR", "ANY", "MX", "TXT", "SRV", "CNAME", "SOA"),
    id: fc.integer({ min: 0, max: 0xffff }),
    edns: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
  })
  .map((q) => query(q.name, q.type as dnsPacket.RecordType, { id: q.id, ...(q.edns !== undefined ? { edns: q.edns } : {}) }));

const mutatedQuery = fc
  .tuple(
    validQuery,
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
    fc.option(fc.nat(), { nil: undefined }),
    fc.uint8Array({ maxLength: 40 }),
  )
  .map(([q, flips, cut, tail]) => {
    const b = Buffer.from(q);
    for (const [i, v] of flips) b[i % b.length] = v;
    const cutAt = cut === undefined ? b.length : cut % (b.length + 1);
    return new Uint8Array(Buffer.concat([b.subarray(0, cutAt), tail]));
  });

/** Random bytes; mostly long enough for a header, with QR clear and opcode 0 (else the handler drops/NOTIMPs at once). */
const randomPacket = fc
  .tuple(fc.uint8Array({ maxLength: 600 }), fc.nat(9), fc.nat(0xffff))
  .map(([b, mode, qd]) => {
    const out = new Uint8Array(Math.max(b.length, mode < 9 ? 12 : 0));
    out.set(b);
    if (mode < 8 && out.length >= 12) {
      out[2] = out[2]! & 0x07; // QR 0, opcode 0
      if (mode < 4) {
        out[4] = qd >> 8; // plausible counts: mostly 1 question
        out[5] = mode < 2 ? 1 : qd & 0xff;
      }
    }
    return out;
  });

function checkDns(buf: Uint8Array, ctx: QueryContext): string {
  let d: ReturnType<typeof handleQuery>;
  try {
    d = handleQuery(buf, ctx);
  } catch (e) {
    throw new Error(`handleQuery threw ${(e as Error).message} on ${Buffer.from(buf).toString("hex")}`);
  }
  if (d.kind === "drop") return "drop";
  if (d.kind === "forward") {
    if (!ctx.forward || typeof d.name !== "string") throw new Error(`bad forward decision on ${Buffer.from(buf).toString("hex")}`);
    return "forward";
  }
  let p: dnsPacket.DecodedPacket & { rcode?: string };
  try {
    p = dnsPacket.decode(d.packet) as typeof p;
  } catch (e) {
    throw new Error(`reply does not decode (${(e as Error).message}): ${d.packet.toString("hex")} for ${Buffer.from(buf).toString("hex")}`);
  }
  if (p.type !== "response") throw new Error(`reply without QR: ${Buffer.from(buf).toString("hex")}`);
  if (p.id !== Buffer.from(buf).readUInt16BE(0)) throw new Error(`reply id differs: ${Buffer.from(buf).toString("hex")}`);
  if (!KNOWN_RCODES.has(p.rcode ?? "")) throw new Error(`rcode ${p.rcode}: ${Buffer.from(buf).toString("hex")}`);
  if (!ctx.tcp && d.packet.length > 4096) throw new Error(`UDP reply of ${d.packet.length} bytes`);
  return p.rcode ?? "?";
}

const DNS_RANDOM_RUNS = 2000;
const DNS_MUTATED_RUNS = 2000;
describe("(c) DNS packets through handleQuery", () => {
  for (const [label, arb, runs] of [
    ["random bytes", randomPacket, DNS_RANDOM_RUNS],
    ["mutated valid queries", mutatedQuery, DNS_MUTATED_RUNS],
  ] as const) {
    test(`${label}: ${runs} packets -> no throw; replies are decodable responses (FORMERR/…) or drop`, () => {
      const seen = new Map<string, number>();
      const t0 = performance.now();
      fc.assert(
        fc.property(arb, dnsCtx, (buf, ctx) => {
          const k = checkDns(buf, ctx);
          seen.set(k, (seen.get(k) ?? 0) + 1);
        }),
        params(runs),
      );
      console.log(`(c) DNS ${label}: ${runs} packets in ${Math.round(performance.now() - t0)} ms: ${JSON.stringify(Object.fromEntries(seen))}`);
    }, 60_000);
  }
});
