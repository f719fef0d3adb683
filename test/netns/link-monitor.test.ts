// The link monitor (src/dataplane/link-monitor.ts) against the kernel: after every kind of link
// change the reconciler cares about (created, enslaved, set down, renamed, taken off a bridge, moved
// to another namespace, deleted) it answers what a dump answers; lost notifications make it dump.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Dataplane } from "../../src/dataplane/dataplane.ts";
import { LinkMonitor } from "../../src/dataplane/link-monitor.ts";
import type { NlMsg } from "../../src/dataplane/netlink/codec.ts";
import type { LinkEvents } from "../../src/dataplane/netlink/link-events.ts";
import { assertRootUntouched, createSandbox, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

function ip(...argv: string[]): void {
  const r = Bun.spawnSync(["ip", ...argv], { stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ip ${argv.join(" ")}: ${r.stderr.toString()}`);
}

describe("link monitor", () => {
  let sb: Sandbox;
  let other: string;
  let dp: Dataplane;
  let mon: LinkMonitor;
  beforeAll(() => {
    sb = createSandbox("lm");
    other = sb.netns("lmo");
    dp = new Dataplane({ hostNs: sb.host });
    mon = dp.linkMonitor(sb.host)!;
  });
  afterAll(async () => {
    mon.close();
    await sb.cleanup();
  });

  const same = async () => expect(mon.links()).toEqual(await dp.links(sb.host));

  test("answers what a dump answers after each kind of change", async () => {
    await same();
    ip("-n", sb.host, "link", "add", "lmbr", "type", "bridge");
    ip("-n", sb.host, "link", "add", "lmbr2", "type", "bridge");
    for (const i of [1, 2, 3]) ip("-n", sb.host, "link", "add", `lmv${i}`, "type", "veth", "peer", "name", `lmp${i}`, "netns", other);
    await same();
    for (const i of [1, 2, 3]) ip("-n", sb.host, "link", "set", `lmv${i}`, "master", "lmbr", "up");
    ip("-n", sb.host, "link", "set", "lmbr", "up");
    await same();
    expect(mon.links().find((l) => l.name === "lmv2")?.master).toBe("lmbr");
    // off the bridge (the bridge's own AF_BRIDGE "dellink" for its port is no deletion), onto another
    ip("-n", sb.host, "link", "set", "lmv1", "nomaster");
    ip("-n", sb.host, "link", "set", "lmv3", "master", "lmbr2");
    await same();
    expect(mon.links().find((l) => l.name === "lmv1")).toMatchObject({ master: undefined, kind: "veth" });
    ip("-n", sb.host, "link", "set", "lmv2", "down");
    ip("-n", sb.host, "link", "set", "lmv1", "name", "lmv1b");
    await same();
    // the master renamed: its ports' master follows without a notification of theirs
    ip("-n", sb.host, "link", "set", "lmbr", "down");
    ip("-n", sb.host, "link", "set", "lmbr", "name", "lmbrx");
    await same();
    expect(mon.links().find((l) => l.name === "lmv2")?.master).toBe("lmbrx");
    ip("-n", sb.host, "link", "add", "lmd", "type", "veth", "peer", "name", "lmdp");
    await same();
    ip("-n", sb.host, "link", "set", "lmd", "netns", other);
    ip("-n", other, "link", "del", "lmp3"); // deleting one end of a pair deletes both
    ip("-n", sb.host, "link", "del", "lmbr2");
    await same();
    expect(mon.links().some((l) => l.name === "lmv3" || l.name === "lmd")).toBe(false);
  });

  test("lost notifications: it dumps again", async () => {
    let lost = false;
    const events = {
      drain: (): NlMsg[] | "lost" => (lost ? "lost" : []),
      close: () => {},
    } as unknown as LinkEvents;
    let dumps = 0;
    const m = new LinkMonitor(events, () => {
      dumps++;
      return [];
    });
    m.links();
    m.links();
    expect(dumps).toBe(1);
    lost = true;
    m.links();
    expect(dumps).toBe(2);
  });
});
