// The web UI end to end: a real berthd with --ui, Debian's chromium driven by playwright-core, the real berth CLI.
// Screenshots for a person to look at go to test-output/ui/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { startDaemon, type TestDaemon } from "../harness/daemon.ts";
import { assertRootUntouched, createSandbox, type Sandbox } from "../harness/sandbox.ts";

assertRootUntouched();

const ROOT = join(import.meta.dir, "..", "..");
const OUT = join(ROOT, "test-output", "ui");
const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
  "--disable-quic",
];

interface GraphContainer {
  label: string;
  state: string;
  /** Interfaces with the network their edge goes to and where their dot is drawn (page pixels). */
  ifaces: { label: string; network: string; x: number; y: number }[];
  ports: string[];
  /** Where the container's box is drawn, in page pixels. */
  box: { x1: number; y1: number; x2: number; y2: number };
  canvas: { x: number; y: number; width: number; height: number };
}

/** Reads a container as the topology graph shows it (the cytoscape model the canvas draws). */
async function graphContainer(page: Page, name: string): Promise<GraphContainer | null> {
  return page.evaluate<GraphContainer | null, string>((n) => {
    // biome-ignore lint/suspicious/noExplicitAny: the page's cytoscape instance, untyped here
    const cy = (globalThis as any).berthGraph;
    if (!cy) return null;
    // biome-ignore lint/suspicious/noExplicitAny: cytoscape elements
    const c = cy.nodes('[kind = "container"]').filter((x: any) => x.data("label") === n)[0];
    if (!c) return null;
    const kids = c.children();
    const el = cy.container().getBoundingClientRect();
    const bb = c.renderedBoundingBox();
    return {
      label: c.data("label"),
      state: c.data("state"),
      // biome-ignore lint/suspicious/noExplicitAny: cytoscape elements
      ifaces: kids.filter('[kind = "interface"]').map((i: any) => ({
        label: i.data("label"),
        network: i.connectedEdges().targets()[0]?.data("label") ?? "",
        x: i.renderedPosition().x + el.left,
        y: i.renderedPosition().y + el.top,
      })),
      // biome-ignore lint/suspicious/noExplicitAny: cytoscape elements
      ports: kids.filter('[kind = "port"]').map((p: any) => p.data("label")),
      box: { x1: bb.x1 + el.left, y1: bb.y1 + el.top, x2: bb.x2 + el.left, y2: bb.y2 + el.top },
      canvas: { x: el.left, y: el.top, width: el.width, height: el.height },
    };
  }, name);
}

async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

describe("web UI (chromium)", () => {
  let sb: Sandbox;
  let d: TestDaemon;
  let base = "";
  let token = "";
  let ctx: BrowserContext;
  let page: Page;
  const shot = (name: string) => page.screenshot({ path: join(OUT, name), fullPage: false });

  beforeAll(async () => {
    // the same build scripts/build.sh runs, into dist/ui where berthd looks by default
    const b = Bun.spawnSync([process.execPath, join(ROOT, "scripts", "build-ui.ts")], { stdout: "pipe", stderr: "pipe" });
    if (b.exitCode !== 0) throw new Error(`UI build failed: ${b.stderr}`);
    mkdirSync(OUT, { recursive: true });
    sb = createSandbox("ui");
    d = await startDaemon(sb, ["--ui", "--ui-port", "0"]);
    const m = await waitFor("the UI address in berthd's log", async () => /web UI on (http:\/\/127\.0\.0\.1:\d+\/)\?token=([^\s)]+)/.exec(d.logs()));
    base = m[1]!;
    token = decodeURIComponent(m[2]!);
    ctx = await chromium.launchPersistentContext(join(sb.stateDir, "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1600, height: 1000 },
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
  });

  afterAll(async () => {
    await ctx?.close();
    d?.cli("rm", "-f", "web", "db", "iso");
    await d?.stop();
    await sb?.cleanup();
  });

  test("listens on 127.0.0.1 only and answers 401 without the token", async () => {
    const port = new URL(base).port;
    // the socket the kernel has: bound to 127.0.0.1, nowhere else
    const ss = Bun.spawnSync(["ss", "-ltnH", `sport = :${port}`]).stdout.toString().trim().split("\n").filter(Boolean);
    expect(ss.length).toBe(1);
    expect(ss[0]).toContain(`127.0.0.1:${port}`);
    // the token berthd printed is in a file only its owner can read
    const file = join(sb.stateDir, "state", "ui-token");
    expect(readFileSync(file, "utf8").trim()).toBe(token);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(token.length).toBeGreaterThanOrEqual(32);

    for (const path of ["", "index.html", "api/networks", "api/berth/topology", "api/events"]) {
      const r = await fetch(base + path, { redirect: "manual" });
      expect(r.status).toBe(401);
      expect(r.headers.get("www-authenticate")).toContain("Bearer");
    }
    const wrong = await fetch(`${base}api/networks`, { headers: { Authorization: `Bearer ${token.slice(1)}x` } });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${base}?token=nope-nope-nope-nope`, { redirect: "manual" })).status).toBe(401);
    const posted = await fetch(`${base}api/networks/create`, { method: "POST", body: JSON.stringify({ Name: "sneaky" }) });
    expect(posted.status).toBe(401);
    expect(d.cli("network", "ls", "-q", "--filter", "name=sneaky").out.trim()).toBe("");

    const okr = await fetch(`${base}api/networks`, { headers: { Authorization: `Bearer ${token}` } });
    expect(okr.status).toBe(200);
    expect(((await okr.json()) as { Name: string }[]).map((n) => n.Name)).toContain("bridge");
    // ?token= is traded for an HttpOnly, SameSite=Strict cookie and dropped from the address
    const first = await fetch(`${base}?token=${encodeURIComponent(token)}`, { redirect: "manual" });
    expect(first.status).toBe(303);
    expect(first.headers.get("location")).toBe("/");
    const cookie = first.headers.get("set-cookie") ?? "";
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Strict");
    const withCookie = await fetch(`${base}api/_ping`, { headers: { Cookie: cookie.split(";")[0]! } });
    expect(await withCookie.text()).toBe("OK");
    // a request from another origin, even with the cookie, is refused
    const cross = await fetch(`${base}api/networks/create`, {
      method: "POST",
      headers: { Cookie: cookie.split(";")[0]!, Origin: "http://evil.example", "Content-Type": "application/json" },
      body: JSON.stringify({ Name: "sneaky" }),
    });
    expect(cross.status).toBe(403);
    expect(d.cli("network", "ls", "-q", "--filter", "name=sneaky").out.trim()).toBe("");
  });

  test("a network created in the UI is in `berth network ls`; a bad one shows its error inline", async () => {
    await page.goto(`${base}?token=${encodeURIComponent(token)}`);
    expect(new URL(page.url()).search).toBe(""); // the token left the address bar
    await page.locator('[data-testid="live"][data-state="live"]').waitFor();
    const form = page.getByTestId("create-network");
    await form.locator('input[name="name"]').fill("uinet");
    await form.locator('input[name="subnet"]').fill("10.124.50.0/24");
    await form.locator('textarea[name="options"]').fill("com.docker.network.driver.mtu=1400");
    await form.getByRole("button", { name: "Create" }).click();
    await page.getByTestId("create-network-ok").waitFor();
    const ls = d.cli("network", "ls");
    expect(ls.code).toBe(0);
    expect(ls.out).toMatch(/\buinet\b/);
    const [net] = JSON.parse(d.cli("network", "inspect", "uinet").out);
    expect(net.IPAM.Config[0].Subnet).toBe("10.124.50.0/24");
    expect(net.Options["com.docker.network.driver.mtu"]).toBe("1400");
    await page.getByTestId("network-uinet").waitFor();
    await shot("01-network-created.png");

    // the same name again: Docker's conflict message, under the form
    await form.locator('input[name="name"]').fill("uinet");
    await form.locator('input[name="subnet"]').fill("");
    await form.getByRole("button", { name: "Create" }).click();
    await expect(page.getByTestId("create-network-error").textContent()).resolves.toContain("already exists");
    // a bad subnet names the field at fault
    await form.locator('input[name="name"]').fill("badnet");
    await form.locator('input[name="subnet"]').fill("10.124.300.0/24");
    await form.getByRole("button", { name: "Create" }).click();
    await page.getByTestId("create-network-error").filter({ hasText: "Subnet" }).waitFor();
    expect(d.cli("network", "ls", "-q", "--filter", "name=badnet").out.trim()).toBe("");
    await shot("02-inline-error.png");
  });

  test("the topology shows a container started from the CLI, live, and its details", async () => {
    const run = d.cli("run", "-d", "--name", "web", "--network", "uinet", "-p", "8080:80", "--memory", "32m", "--pids", "50", "--", "sleep", "300");
    expect(run.code).toBe(0);
    // no reload: the event stream brings it in
    const g = await waitFor("web in the topology graph", () => graphContainer(page, "web"));
    expect(g.state).toBe("running");
    expect(g.ifaces).toHaveLength(1);
    const [web] = JSON.parse(d.cli("inspect", "web").out);
    const ip = (web.Networks[0].Addresses[0] as string).split("/")[0]!;
    expect(g.ifaces[0]!.label).toBe(`eth0\n${ip}`);
    expect(g.ifaces[0]!.network).toBe("uinet\n10.124.50.0/24");
    expect(g.ports).toEqual([":8080 → 80/tcp"]);
    // drawn inside the visible canvas
    expect(g.box.x1).toBeGreaterThanOrEqual(g.canvas.x);
    expect(g.box.y1).toBeGreaterThanOrEqual(g.canvas.y);
    expect(g.box.x2).toBeLessThanOrEqual(g.canvas.x + g.canvas.width);
    expect(g.box.y2).toBeLessThanOrEqual(g.canvas.y + g.canvas.height);
    await shot("03-topology-live.png");

    // a click on the container's interface in the graph opens its details: addresses, MAC, limits, ports, the kernel's routes
    await page.mouse.click(g.ifaces[0]!.x, g.ifaces[0]!.y);
    const details = page.locator('[data-testid="container-details"][data-container="web"]');
    await details.waitFor();
    await expect(details.getByTestId("container-networks").textContent()).resolves.toContain(web.Networks[0].MacAddress);
    await expect(details.textContent()).resolves.toContain("32 MiB");
    await expect(details.getByTestId("container-ports").textContent()).resolves.toContain("0.0.0.0:8080 → 80/tcp");
    await details.getByTestId("kernel-routes").filter({ hasText: "default" }).waitFor();
    await expect(details.getByTestId("kernel-interfaces").textContent()).resolves.toContain(`${ip}/24`);
    await shot("04-container-details.png");
  });

  test("connect and disconnect a container, network details, remove a network: all from the UI", async () => {
    expect(d.cli("run", "-d", "--name", "db", "--network", "uinet", "--", "sleep", "300").code).toBe(0);
    await page.getByTestId("tab-networks").click();
    const form = page.getByTestId("create-network");
    await form.locator('input[name="name"]').fill("uiback");
    await form.locator('input[name="subnet"]').fill("");
    await form.locator('input[name="internal"]').check();
    await form.getByRole("button", { name: "Create" }).click();
    await page.getByTestId("network-uiback").click();
    const back = page.locator('[data-testid="network-details"][data-network="uiback"]');
    await back.waitFor();
    await back.getByTestId("connect-form").locator("select").selectOption("web");
    await back.getByTestId("connect-form").getByRole("button", { name: "Connect" }).click();
    await back.getByTestId("disconnect-web").waitFor();
    const attached = () => (JSON.parse(d.cli("inspect", "web").out)[0].Networks as unknown[]).length;
    expect(attached()).toBe(2);
    // the graph follows: web now has two interfaces
    await waitFor("web with two interfaces", async () => (await graphContainer(page, "web"))?.ifaces.length === 2);

    const uinet = page.locator('[data-testid="network-details"][data-network="uinet"]');
    await page.getByTestId("network-uinet").click();
    await uinet.waitFor();
    await expect(uinet.getByTestId("ipam-usage").textContent()).resolves.toContain("2 allocated + 1 reserved of 254");
    await expect(uinet.getByTestId("network-containers").textContent()).resolves.toContain("db");
    const dns = await uinet.getByTestId("dns-names").textContent();
    expect(dns).toContain("web");
    expect(dns).toContain("db");
    await shot("05-network-details.png");

    await page.getByTestId("network-uiback").click();
    await back.getByTestId("disconnect-web").click();
    await waitFor("web disconnected from uiback", async () => attached() === 1);

    // removing a network in use is refused, inline; once it is free it goes
    expect(d.cli("run", "-d", "--name", "iso", "--network", "uiback", "--", "sleep", "300").code).toBe(0);
    await back.getByTestId("network-containers").filter({ hasText: "iso" }).waitFor();
    await back.getByTestId("remove-network").click();
    await back.getByTestId("remove-network").click(); // confirm
    await expect(back.getByTestId("remove-network-error").textContent()).resolves.toMatch(/active endpoints|in use/);
    await shot("06-remove-refused.png");
    expect(d.cli("rm", "-f", "iso").code).toBe(0);
    await back.getByTestId("network-containers").waitFor({ state: "detached" });
    await back.getByTestId("remove-network").click();
    await back.getByTestId("remove-network").click();
    await page.getByTestId("network-uiback").waitFor({ state: "detached" });
    expect(d.cli("network", "ls", "-q", "--filter", "name=uiback").out.trim()).toBe("");
  });

  test("the firewall as Berth renders it, and trace between two containers", async () => {
    const [web] = JSON.parse(d.cli("inspect", "web").out);
    const ip = (web.Networks[0].Addresses[0] as string).split("/")[0]!;
    await page.getByTestId("tab-firewall").click();
    const fw = page.getByTestId("firewall");
    await fw.getByTestId("set-ports4").filter({ hasText: `0.0.0.0/0 . tcp . 8080 : ${ip} . 80` }).waitFor();
    await expect(fw.getByTestId("firewall-kernel").textContent()).resolves.toContain("in the kernel");
    const bridge = JSON.parse(d.cli("network", "inspect", "uinet").out)[0].BerthDriverState.bridge as string;
    await expect(fw.getByTestId("set-bridges").textContent()).resolves.toContain(bridge);
    await shot("07-firewall.png");

    await page.getByTestId("tab-trace").click();
    const tr = page.getByTestId("trace");
    await tr.locator('input[name="src"]').fill("web");
    await tr.locator('input[name="dst"]').fill("db");
    await tr.locator('input[name="port"]').fill("80");
    await tr.getByRole("button", { name: "Trace" }).click();
    const result = tr.getByTestId("trace-result");
    await result.waitFor();
    expect(await result.getAttribute("data-verdict")).toBe("allowed");
    await expect(result.textContent()).resolves.toContain("both are on network uinet");
    await shot("08-trace.png");
    // the same question through the CLI gets the same answer
    expect(d.cli("trace", "web", "db", "80").code).toBe(0);
    // from outside to the container's own address: dropped, and said why
    await tr.locator('input[name="src"]').fill("192.0.2.7");
    await tr.locator('input[name="dst"]').fill("web");
    await tr.getByRole("button", { name: "Trace" }).click();
    await tr.locator('[data-testid="trace-result"][data-verdict="dropped"]').filter({ hasText: "publish a port instead" }).waitFor();
    expect(d.cli("trace", "192.0.2.7", "web", "80").code).toBe(3);
    await tr.locator('input[name="dst"]').fill("nosuch");
    await tr.getByRole("button", { name: "Trace" }).click();
    await expect(tr.getByTestId("trace-error").textContent()).resolves.toContain("neither a container nor an IP address");
  });

  test("the topology drops a container removed from the CLI", async () => {
    expect(d.cli("rm", "-f", "db").code).toBe(0);
    await waitFor("db gone from the graph", async () => (await graphContainer(page, "db")) === null);
    expect(await graphContainer(page, "web")).not.toBeNull();
  });
});
