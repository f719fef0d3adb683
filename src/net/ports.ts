/**
 * Ports and Docker "-p" style port mappings. Re-exported from names.ts.
 */
import { invalid } from "../errors.ts";
import { IP } from "./ip.ts";
import { DECIMAL, HAS_WHITESPACE, describeType, quote, requireString } from "./internal.ts";
import { parseAddr } from "./parse-ip.ts";

export type Protocol = "tcp" | "udp" | "sctp";
export const PROTOCOLS: readonly Protocol[] = ["tcp", "udp", "sctp"];

export interface PortMapping {
  /** undefined means all addresses (0.0.0.0 / ::). */
  hostIP: IP | undefined;
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
}

/** A port number 1-65535 from its decimal text, or the reason it is not one. */
function portReason(text: string): number | string {
  if (text === "") return "is empty";
  if (!DECIMAL.test(text)) return `${quote(text)} is not a decimal integer`;
  const n = text.length > 5 ? Number.POSITIVE_INFINITY : Number(text);
  if (n < 1 || n > 65535) return `${text} is out of range 1-65535`;
  return n;
}

/** An integer port 1-65535, given as a number or as decimal text. Throws code "port-invalid". */
export function parsePort(s: string | number, field?: string): number {
  if (typeof s === "number") {
    if (!Number.isInteger(s) || s < 1 || s > 65535) {
      throw invalid("port-invalid", `invalid port ${String(s)}: must be an integer 1-65535`, field);
    }
    return s;
  }
  if (typeof s !== "string") throw invalid("port-invalid", `invalid port: expected a number or string, got ${describeType(s)}`, field);
  const r = portReason(s);
  if (typeof r === "string") throw invalid("port-invalid", `invalid port ${quote(s)}: ${r}`, field);
  return r;
}

const FORMAT = `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL], e.g. "8080:80" or "127.0.0.1:8080:80/udp"`;

/**
 * Docker "-p" syntax: "8080:80", "8080:80/udp", "127.0.0.1:8080:80/tcp", "[::1]:8080:80",
 * and ranges "8000-8002:9000-9002" (equal lengths; one mapping per port, in order).
 * A host port is required. Protocol defaults to tcp. Throws code "port-mapping-invalid".
 */
export function parsePortMappings(s: string, field = "publish"): PortMapping[] {
  requireString(s, "port mapping", "port-mapping-invalid", field);
  const bad = (reason: string): never => {
    throw invalid("port-mapping-invalid", `invalid port mapping ${quote(s)}: ${reason}`, field);
  };
  if (s === "") bad(`empty string (expected ${FORMAT})`);
  if (HAS_WHITESPACE.test(s)) bad("contains whitespace");

  let body = s;
  let protocol: Protocol = "tcp";
  const slash = s.indexOf("/");
  if (slash !== -1) {
    body = s.slice(0, slash);
    const p = s.slice(slash + 1).toLowerCase();
    if (p === "") bad(`missing protocol after "/" (one of ${PROTOCOLS.join(", ")})`);
    if (p.includes("/")) bad(`contains more than one "/"`);
    const found = PROTOCOLS.find((x) => x === p);
    if (found === undefined) return bad(`protocol ${quote(p)} is not one of ${PROTOCOLS.join(", ")}`);
    protocol = found;
  }

  let hostIPText: string | undefined;
  let parts: string[];
  if (body.startsWith("[")) {
    const close = body.indexOf("]");
    if (close === -1) bad(`missing "]" after the bracketed host address`);
    if (body[close + 1] !== ":") bad(`expected ":" after "]"`);
    hostIPText = body.slice(1, close);
    parts = body.slice(close + 2).split(":");
    if (parts.length > 2) bad(`too many ":"-separated parts after the host address (expected ${FORMAT})`);
  } else {
    parts = body.split(":");
    // Like Docker, an unbracketed IPv6 host address is everything before the last two parts.
    if (parts.length > 2) hostIPText = parts.slice(0, -2).join(":");
  }
  if (parts.length < 2) bad(`a host port is required (format: ${FORMAT})`);

  let hostIP: IP | undefined;
  if (hostIPText !== undefined) {
    if (hostIPText === "") bad("the host IP is empty (leave out the leading \":\" to listen on all addresses)");
    const r = parseAddr(hostIPText);
    if (!r.ok) {
      const hint = hostIPText.includes(":") && !body.startsWith("[") ? ` (write IPv6 host addresses in brackets, e.g. "[::1]:8080:80")` : "";
      return bad(`host IP ${quote(hostIPText)} is not a valid ${r.what}: ${r.reason}${hint}`);
    }
    hostIP = IP.fromBigInt(r.family, r.value);
  }

  const hostText = parts.at(-2) ?? "";
  const containerText = parts.at(-1) ?? "";
  if (hostText === "") bad(`a host port is required (format: ${FORMAT})`);
  const host = parseRange(hostText, "host port", bad);
  const container = parseRange(containerText, "container port", bad);
  const n = host[1] - host[0] + 1;
  const m = container[1] - container[0] + 1;
  if (n !== m) {
    bad(`host port range ${quote(hostText)} has ${n} port${n === 1 ? "" : "s"} but container port range ${quote(containerText)} has ${m}; they must be the same length`);
  }
  const out: PortMapping[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ hostIP, hostPort: host[0] + i, containerPort: container[0] + i, protocol });
  }
  return out;
}

/** Like parsePortMappings, for exactly one port (a range of more than one port is rejected). */
export function parsePortMapping(s: string, field = "publish"): PortMapping {
  const all = parsePortMappings(s, field);
  const [only] = all;
  if (only === undefined || all.length !== 1) {
    throw invalid("port-mapping-invalid", `invalid port mapping ${quote(s)}: expected a single port, but the range has ${all.length}`, field);
  }
  return only;
}

function parseRange(text: string, what: string, bad: (reason: string) => never): [number, number] {
  const ends = text.split("-");
  if (ends.length > 2) bad(`${what} range ${quote(text)} has more than one "-"`);
  const [a = "", b] = ends;
  const start = portReason(a);
  if (typeof start === "string") return bad(`${what} ${start}`);
  if (b === undefined) return [start, start];
  const end = portReason(b);
  if (typeof end === "string") return bad(`${what} range end ${end}`);
  if (end < start) bad(`${what} range ${quote(text)} ends before it starts`);
  return [start, end];
}

/** docker ps style: "127.0.0.1:8080->80/tcp", "[::1]:8080->80/udp", "0.0.0.0:8080->80/tcp" when hostIP is undefined. */
export function formatPortMapping(m: PortMapping): string {
  const host = m.hostIP === undefined ? "0.0.0.0" : m.hostIP.family === 6 ? `[${m.hostIP}]` : m.hostIP.toString();
  return `${host}:${m.hostPort}->${m.containerPort}/${m.protocol}`;
}
