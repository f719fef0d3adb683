// The web UI server's pure parts: who may in (token, Host, Origin), the token file, and the firewall view it shows.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { authorize, generateToken, readTokenFile, validateToken, writeTokenFile } from "../../src/daemon/ui-server.ts";
import { describeTable, parseRenderedTable } from "../../src/firewall/describe.ts";
import { renderTable } from "../../src/firewall/ruleset.ts";
import { IP, Prefix } from "../../src/net/index.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";
const req = (url: string, init: RequestInit & { host?: string } = {}) => {
  const headers = new Headers(init.headers);
  headers.set("host", init.host ?? "127.0.0.1:7777");
  return new Request(url, { ...init, headers });
};

describe("UI authorisation", () => {
  test("no token, a wrong one, or one of another length: 401", () => {
    expect(authorize(req("http://127.0.0.1:7777/"), TOKEN, 7777)).toMatchObject({ ok: false, status: 401 });
    expect(authorize(req("http://127.0.0.1:7777/", { headers: { Authorization: `Bearer ${TOKEN.replace("0", "1")}` } }), TOKEN, 7777)).toMatchObject({ ok: false, status: 401 });
    expect(authorize(req("http://127.0.0.1:7777/?token=x"), TOKEN, 7777)).toMatchObject({ ok: false, status: 401 });
    expect(authorize(req("http://127.0.0.1:7777/", { headers: { Cookie: "berth_ui_token=nope" } }), TOKEN, 7777)).toMatchObject({ ok: false, status: 401 });
  });

  test("the token as bearer header, cookie or query parameter", () => {
    expect(authorize(req("http://127.0.0.1:7777/", { headers: { Authorization: `Bearer ${TOKEN}` } }), TOKEN, 7777)).toEqual({ ok: true, via: "header" });
    expect(authorize(req("http://127.0.0.1:7777/", { headers: { Cookie: `a=b; berth_ui_token=${TOKEN}` } }), TOKEN, 7777)).toEqual({ ok: true, via: "cookie" });
    expect(authorize(req(`http://127.0.0.1:7777/x?token=${TOKEN}`), TOKEN, 7777)).toEqual({ ok: true, via: "query" });
    expect(authorize(req("http://localhost:7777/", { host: "localhost:7777", headers: { Authorization: `Bearer ${TOKEN}` } }), TOKEN, 7777).ok).toBe(true);
  });

  test("another Host (DNS rebinding) or a cross-origin write is refused even with the token", () => {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    expect(authorize(req("http://127.0.0.1:7777/", { host: "evil.example:7777", headers: auth }), TOKEN, 7777)).toMatchObject({ ok: false, status: 403 });
    expect(authorize(req("http://127.0.0.1:7777/", { host: "127.0.0.1:8888", headers: auth }), TOKEN, 7777)).toMatchObject({ ok: false, status: 403 });
    const cross = req("http://127.0.0.1:7777/api/networks/create", { method: "POST", headers: { ...auth, Origin: "http://evil.example" } });
    expect(authorize(cross, TOKEN, 7777)).toMatchObject({ ok: false, status: 403 });
    const same = req("http://127.0.0.1:7777/api/networks/create", { method: "POST", headers: { ...auth, Origin: "http://127.0.0.1:7777" } });
    expect(authorize(same, TOKEN, 7777).ok).toBe(true);
  });
});

describe("UI token", () => {
  test("generated tokens are long and differ", () => {
    const a = generateToken();
    expect(a.length).toBeGreaterThanOrEqual(40);
    expect(generateToken()).not.toBe(a);
    expect(validateToken(a)).toBe(a);
  });

  test("short or non-printable tokens are refused with the field named", () => {
    expect(() => validateToken("short")).toThrow("at least 16");
    expect(() => validateToken("has a space in it, long enough")).toThrow("printable");
    try {
      validateToken("x");
    } catch (e) {
      expect((e as { kind: string; field: string }).kind).toBe("invalid");
      expect((e as { field: string }).field).toBe("ui-token");
    }
  });

  test("the token file is 0600 even when an older file was world-readable; --ui-token-file reads it back", () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-ui-token-"));
    try {
      writeFileSync(join(dir, "ui-token"), "old\n", { mode: 0o644 });
      const path = writeTokenFile(dir, TOKEN);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(readFileSync(path, "utf8")).toBe(`${TOKEN}\n`);
      expect(readTokenFile(path)).toBe(TOKEN);
      expect(() => readTokenFile(join(dir, "missing"))).toThrow("cannot read");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("firewall view", () => {
  test("sets, maps, elements and chains come back exactly as rendered", () => {
    const state = {
      networks: [
        { bridge: "br-aaa", internal: false, masquerade: [Prefix.parse("10.1.0.0/24")] },
        { bridge: "br-bbb", internal: true, masquerade: [] },
      ],
      ports: [{ hostIP: undefined, protocol: "tcp" as const, hostPort: 8080, target: IP.parse("10.1.0.2"), targetPort: 80 }],
    };
    const v = describeTable(state);
    expect(v.family).toBe("inet");
    expect(v.name).toBe("berth");
    const set = (n: string) => v.sets.find((s) => s.name === n)!;
    expect(set("bridges")).toEqual({ name: "bridges", kind: "set", type: "ifname", flags: [], elements: ['"br-aaa"', '"br-bbb"'] });
    expect(set("internal").elements).toEqual(['"br-bbb"']);
    expect(set("nat4")).toMatchObject({ flags: ["interval", "auto-merge"], elements: ["10.1.0.0/24"] });
    expect(set("ports4")).toMatchObject({ kind: "map", elements: ["0.0.0.0/0 . tcp . 8080 : 10.1.0.2 . 80"] });
    expect(set("ports6").elements).toEqual([]);
    expect(v.chains.map((c) => c.name)).toEqual(["prerouting", "output", "postrouting", "forward"]);
    expect(v.chains.find((c) => c.name === "forward")!.base).toContain("hook forward");
    // every rule line of the text is in exactly one chain
    const ruleLines = renderTable(state).split("\n").map((l) => l.trim()).filter((l) => /^(meta|ip|ip6|iifname|oifname|ct) /.test(l));
    expect(v.chains.flatMap((c) => c.rules)).toEqual(ruleLines);
    expect(parseRenderedTable(v.text)).toEqual(v);
  });
});

describe("berthd UI flags", () => {
  test("UI flags without --ui, a bad port, or two token sources are refused before anything starts", async () => {
    const { berthdMain } = await import("../../src/daemon/main.ts");
    const err = console.error;
    const said: string[] = [];
    console.error = (...a: unknown[]) => said.push(a.join(" "));
    try {
      expect(await berthdMain(["--ui-port", "8000"])).toBe(2);
      expect(await berthdMain(["--ui", "--ui-port", "70000"])).toBe(2);
      expect(await berthdMain(["--ui", "--ui-token", TOKEN, "--ui-token-file", "/nonexistent"])).toBe(2);
      expect(await berthdMain(["--ui", "--ui-token", "short"])).toBe(2);
    } finally {
      console.error = err;
    }
    expect(said).toEqual([
      "berthd: --ui-port needs --ui",
      "berthd: --ui-port must be a port number 0-65535 (got 70000)",
      "berthd: give --ui-token or --ui-token-file, not both",
      "berthd: --ui-token: the UI token must be at least 16 characters",
    ]);
  });
});
