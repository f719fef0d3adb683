/**
 * ipMasq for the bridge and ptp plugins, in Berth's own nftables table
 * `inet berth-cni` (never berthd's `inet berth`, never anybody else's).
 *
 * One rule set for all containers, one element per subnet:
 *   masq4 / masq6              subnets whose traffic leaving them is masqueraded
 *   masq4-local / masq6-local  (subnet . subnet): traffic inside a subnet is not
 *   masq4-users / masq6-users  bookkeeping only: each attachment's address, with
 *                              the attachment ("<net>|<containerID>|<ifname>") as
 *                              the element comment. A subnet element goes when its
 *                              last user goes (DEL or GC).
 *
 * The same semantics as the reference plugins' per-container chains
 * (`-d subnet ACCEPT; ! -d 224.0.0.0/4 MASQUERADE`), without a rule per container.
 * Every change is one `nft -f` transaction. An ADD that finds the chain without its
 * rules re-creates them (flush + add in the same transaction), so a table that lost
 * its rules heals.
 */
import type { Dataplane } from "../../dataplane/dataplane.ts";
import { type ElementBytes, type ElementChange, elementBytes, rangeElements } from "../../dataplane/netlink/nftables.ts";
import { IP, type IPNet, Prefix } from "../../net/index.ts";

export const MASQ_FAMILY = "inet";
export const MASQ_TABLE = "berth-cni";
const T = `${MASQ_FAMILY} ${MASQ_TABLE}`;
const SAFE = /^[A-Za-z0-9_.-]+$/;

function hash(s: string): string {
  return `h${Bun.hash(s).toString(16)}`;
}

/** The network's part of an attachment tag (GC matches on it). */
export function netTag(network: string): string {
  return SAFE.test(network) && network.length <= 40 ? network : hash(network);
}

/** The element comment naming one attachment (at most 127 characters, only safe characters). */
export function masqTag(network: string, containerId: string, ifname: string): string {
  const rest = `${containerId}|${ifname}`;
  const n = netTag(network);
  const safeRest = SAFE.test(containerId) && SAFE.test(ifname) && n.length + 1 + rest.length <= 127;
  return `${n}|${safeRest ? rest : hash(rest)}`;
}

const fam = (f: 4 | 6): string => (f === 4 ? "4" : "6");

/** The nft script that makes sure the table exists and records `addrs` of attachment `tag`. */
export function masqAddScript(addrs: readonly IPNet[], tag: string): string {
  const lines = [`add table ${T}`];
  for (const f of [4, 6] as const) {
    const t = f === 4 ? "ipv4_addr" : "ipv6_addr";
    lines.push(
      `add set ${T} masq${f} { type ${t}; flags interval; }`,
      `add set ${T} masq${f}-local { type ${t} . ${t}; flags interval; }`,
      `add set ${T} masq${f}-users { type ${t}; }`,
    );
  }
  lines.push(
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `flush chain ${T} postrouting`,
    `add rule ${T} postrouting ip saddr . ip daddr @masq4-local return`,
    `add rule ${T} postrouting ip saddr @masq4 ip daddr != 224.0.0.0/4 masquerade`,
    `add rule ${T} postrouting ip6 saddr . ip6 daddr @masq6-local return`,
    `add rule ${T} postrouting ip6 saddr @masq6 ip6 daddr != ff00::/8 masquerade`,
  );
  for (const a of addrs) {
    const f = fam(a.family);
    // add+delete+add: replaces a stale element of the same address (other comment) in one transaction
    lines.push(
      `add element ${T} masq${f}-users { ${a.ip} }`,
      `delete element ${T} masq${f}-users { ${a.ip} }`,
      `add element ${T} masq${f}-users { ${a.ip} comment "${tag}" }`,
      `add element ${T} masq${f} { ${a.prefix} }`,
      `add element ${T} masq${f}-local { ${a.prefix} . ${a.prefix} }`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export interface MasqState {
  users: { ip: IP; tag: string }[];
  subnets: Prefix[];
}

type J = Record<string, unknown>;

function toPrefix(v: unknown): Prefix | undefined {
  if (typeof v === "string") {
    const ip = IP.tryParse(v);
    return ip ? Prefix.of(ip, ip.bits) : undefined;
  }
  if (v && typeof v === "object") {
    const o = v as J;
    if (o.prefix && typeof o.prefix === "object") {
      const p = o.prefix as { addr?: string; len?: number };
      const ip = p.addr ? IP.tryParse(p.addr) : undefined;
      return ip && typeof p.len === "number" ? Prefix.of(ip, p.len) : undefined;
    }
    if (Array.isArray(o.range) && o.range.length === 2) {
      const a = IP.tryParse(String(o.range[0]));
      const b = IP.tryParse(String(o.range[1]));
      if (!a || !b || a.family !== b.family) return undefined;
      // an aligned range is a prefix
      for (let len = 0; len <= a.bits; len++) {
        const p = Prefix.of(a, len);
        if (p.ip.equals(a) && p.last().equals(b)) return p;
      }
    }
  }
  return undefined;
}

/** Reads the table's users and subnets from `nft -j list table` output. */
export function parseMasqState(j: { nftables: J[] } | undefined): MasqState {
  const st: MasqState = { users: [], subnets: [] };
  for (const item of j?.nftables ?? []) {
    const set = item.set as J | undefined;
    if (!set || typeof set.name !== "string") continue;
    const elems = (Array.isArray(set.elem) ? set.elem : []) as unknown[];
    if (set.name === "masq4-users" || set.name === "masq6-users") {
      for (const e of elems) {
        const o = (e && typeof e === "object" ? (e as J).elem : undefined) as J | undefined;
        const ip = IP.tryParse(String(o?.val ?? e));
        if (ip) st.users.push({ ip, tag: typeof o?.comment === "string" ? o.comment : "" });
      }
    } else if (set.name === "masq4" || set.name === "masq6") {
      for (const e of elems) {
        const o = e && typeof e === "object" && "elem" in (e as J) ? ((e as J).elem as J).val : e;
        const p = toPrefix(o);
        if (p) st.subnets.push(p);
      }
    }
  }
  return st;
}

/** Script removing `gone` users and the subnets in `drop`. */
export function masqRemoveScript(gone: readonly { ip: IP }[], drop: readonly Prefix[]): string {
  const lines: string[] = [];
  for (const u of gone) lines.push(`delete element ${T} masq${fam(u.ip.family)}-users { ${u.ip} }`);
  for (const p of drop) {
    lines.push(`delete element ${T} masq${fam(p.family)} { ${p} }`, `delete element ${T} masq${fam(p.family)}-local { ${p} . ${p} }`);
  }
  return lines.length > 0 ? `${lines.join("\n")}\n` : "";
}

/** The subnets that lose their last user when `gone` leave. */
export function subnetsToDrop(st: MasqState, gone: readonly { ip: IP; tag: string }[]): Prefix[] {
  const goneSet = new Set(gone.map((u) => `${u.ip}`));
  const left = st.users.filter((u) => !goneSet.has(`${u.ip}`));
  return st.subnets.filter((s) => gone.some((u) => s.contains(u.ip)) && !left.some((u) => s.contains(u.ip)));
}

/**
 * The fast path of ADD: the elements only, as netlink set-element changes in one
 * transaction (no libnftables in the process: its first use costs ~3.5 ms). The user
 * is created (a stale element of the same address fails it); the subnet is added.
 * undefined for a subnet the fast path cannot express (one reaching the end of the
 * address space).
 */
export function masqFastChanges(addrs: readonly IPNet[], tag: string): ElementChange[] | undefined {
  const changes: ElementChange[] = [];
  for (const a of addrs) {
    const f = fam(a.family);
    const range = rangeElements(a.prefix);
    if (!range) return undefined;
    changes.push(
      { op: "create", set: `masq${f}-users`, elements: [elementBytes({ key: [{ ip: a.ip }], comment: tag })] },
      { op: "add", set: `masq${f}`, elements: range },
      { op: "add", set: `masq${f}-local`, elements: [localPair(a.prefix)] },
    );
  }
  return changes;
}

/** A subnet's `masqN-local` element (subnet . subnet), as the concatenated range it is. */
function localPair(p: Prefix): ElementBytes {
  const first = { ip: p.ip };
  const last = { ip: p.last() };
  return elementBytes({ key: [first, first], keyEnd: [last, last] });
}

/** The same removal as masqRemoveScript, as netlink changes; undefined when a subnet cannot be expressed. */
export function masqRemoveChanges(gone: readonly { ip: IP }[], drop: readonly Prefix[]): ElementChange[] | undefined {
  const changes: ElementChange[] = gone.map((u) => ({ op: "delete", set: `masq${fam(u.ip.family)}-users`, elements: [elementBytes({ key: [{ ip: u.ip }] })] }));
  for (const p of drop) {
    const range = rangeElements(p);
    if (!range) return undefined;
    changes.push(
      { op: "delete", set: `masq${fam(p.family)}`, elements: range },
      { op: "delete", set: `masq${fam(p.family)}-local`, elements: [localPair(p)] },
    );
  }
  return changes;
}

/** The rules masqAddScript puts in the postrouting chain. */
export const MASQ_RULES = 4;

export async function masqAdd(dp: Dataplane, addrs: readonly IPNet[], tag: string): Promise<void> {
  if (addrs.length === 0) return;
  // common case: table, sets and rules are in place; only the elements are new. The rules are
  // counted by asking the kernel: libnftables' `list chain` would first dump every user element
  const fast = masqFastChanges(addrs, tag);
  if (fast && (await applied(dp, fast)) && (await dp.nftChainRuleCount(null, MASQ_FAMILY, MASQ_TABLE, "postrouting")) === MASQ_RULES) return;
  // table missing or flushed, rules gone, or a stale user of the same address: the full (healing) script
  await dp.nftApply(null, masqAddScript(addrs, tag));
}

/** Applies netlink element changes; false when the kernel refused them (nothing changed). */
async function applied(dp: Dataplane, changes: readonly ElementChange[]): Promise<boolean> {
  try {
    await dp.nftChangeElements(null, MASQ_FAMILY, MASQ_TABLE, changes);
    return true;
  } catch {
    return false;
  }
}

async function readState(dp: Dataplane): Promise<MasqState | undefined> {
  const j = await dp.nftListTable(null, MASQ_FAMILY, MASQ_TABLE);
  return j ? parseMasqState(j as { nftables: J[] }) : undefined;
}

/**
 * The state as far as one attachment with addresses `addrs` needs it: the users of
 * their families, read from the kernel directly (no JSON of the whole table), and
 * their subnets.
 */
async function readUsersOf(dp: Dataplane, addrs: readonly IPNet[]): Promise<MasqState> {
  const users: MasqState["users"] = [];
  for (const f of new Set(addrs.map((a) => a.family))) {
    for (const e of await dp.nftSetElements(null, MASQ_FAMILY, MASQ_TABLE, `masq${fam(f)}-users`)) users.push({ ip: IP.fromBytes(e.key), tag: e.comment });
  }
  return { users, subnets: addrs.map((a) => a.prefix) };
}

/**
 * Removes the users matching `which` and the subnets they were the last users of. Idempotent.
 * `read` gives the state for the first attempt; a retry reads the whole table.
 */
async function removeUsers(dp: Dataplane, which: (tag: string) => boolean, read: () => Promise<MasqState | undefined> = () => readState(dp)): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const st = attempt === 0 ? await read() : await readState(dp);
    if (!st) return;
    const gone = st.users.filter((u) => which(u.tag));
    if (gone.length === 0) return;
    const drop = subnetsToDrop(st, gone);
    try {
      const changes = masqRemoveChanges(gone, drop);
      if (!changes || !(await applied(dp, changes))) await dp.nftApply(null, masqRemoveScript(gone, drop));
    } catch (e) {
      // a concurrent change removed something first (or a subnet was not there): read again (once)
      if (attempt === 0) continue;
      throw e;
    }
    if (drop.length === 0) return;
    // an ADD in the same subnet may have slipped in between the read and the delete: put its subnet back
    const after = await read();
    const back = drop.filter((p) => after?.users.some((u) => p.contains(u.ip)));
    if (back.length > 0) {
      const f = (p: Prefix) => fam(p.family);
      await dp.nftApply(
        null,
        `${back.map((p) => `add element ${T} masq${f(p)} { ${p} }\nadd element ${T} masq${f(p)}-local { ${p} . ${p} }`).join("\n")}\n`,
      );
    }
    return;
  }
}

/** DEL: forgets one attachment; its addresses (from prevResult), when known, spare reading the whole table. */
export function masqDel(dp: Dataplane, tag: string, addrs: readonly IPNet[] = []): Promise<void> {
  return removeUsers(dp, (t) => t === tag, addrs.length > 0 ? () => readUsersOf(dp, addrs) : undefined);
}

/** GC: forgets every attachment of the network not in `keep` ("containerID/ifname", see validAttachments). */
export function masqGc(dp: Dataplane, network: string, keep: ReadonlySet<string>): Promise<void> {
  const prefix = `${netTag(network)}|`;
  const tags = new Set(
    [...keep].map((k) => {
      const i = k.lastIndexOf("/");
      return masqTag(network, k.slice(0, i), k.slice(i + 1));
    }),
  );
  return removeUsers(dp, (t) => t.startsWith(prefix) && !tags.has(t));
}
