/**
 * Validation of the names Berth accepts from users. Each function returns its
 * input unchanged or throws BerthError (kind "invalid") carrying the field name.
 */
import { invalid } from "../errors.ts";
import { quote, requireString } from "./internal.ts";

export { formatPortMapping, parsePort, parsePortMapping, parsePortMappings, PROTOCOLS } from "./ports.ts";
export type { PortMapping, Protocol } from "./ports.ts";

const IFNAMSIZ = 16; // includes the terminating NUL
const utf8 = new TextEncoder();

/** Shows one character in a message: quoted, or as U+XXXX when it would not print. */
function showChar(c: string): string {
  const cp = c.codePointAt(0) ?? 0;
  return cp < 0x20 || cp === 0x7f || (/\s/.test(c) && c !== " ")
    ? `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`
    : JSON.stringify(c);
}

/** Linux interface name (kernel dev_valid_name): 1-15 bytes, not "." or "..", no "/", ":", whitespace or NUL. */
export function validateIfName(s: string, field = "ifname"): string {
  const code = "ifname-invalid";
  requireString(s, "interface name", code, field);
  const bad = (msg: string): never => {
    throw invalid(code, msg, field);
  };
  if (s === "") bad(`interface name "" is empty`);
  const bytes = utf8.encode(s).length;
  if (bytes > IFNAMSIZ - 1) {
    const size = bytes === s.length ? `${bytes} characters` : `${bytes} bytes in UTF-8`;
    bad(`interface name ${quote(s)} is ${size}; Linux allows at most ${IFNAMSIZ - 1}`);
  }
  if (s === "." || s === "..") bad(`interface name ${quote(s)} is reserved`);
  for (const c of s) {
    if (c === "/" || c === ":" || c === "\0" || /\s/.test(c)) {
      bad(`interface name ${quote(s)} contains ${showChar(c)}; Linux does not allow "/", ":", whitespace or NUL in interface names`);
    }
  }
  return s;
}

/** Shared rule for container IDs and network names: ^[A-Za-z0-9][A-Za-z0-9_.-]*$, at most 128 characters. */
function validateIdent(s: string, what: string, code: string, field: string | undefined): string {
  requireString(s, what, code, field);
  const bad = (reason: string): never => {
    throw invalid(code, `${what} ${quote(s)} ${reason}`, field);
  };
  if (s === "") bad("is empty");
  if (s.length > 128) bad(`is ${s.length} characters; at most 128 are allowed`);
  let pos = 0;
  for (const c of s) {
    pos++;
    if (pos === 1 && !/^[A-Za-z0-9]$/.test(c)) bad(`must start with a letter or digit, not ${showChar(c)}`);
    if (!/^[A-Za-z0-9_.-]$/.test(c)) {
      bad(`contains ${showChar(c)} at position ${pos}; only letters, digits, "_", "." and "-" are allowed`);
    }
  }
  return s;
}

/** 1-128 characters of [A-Za-z0-9][A-Za-z0-9_.-]*. */
export function validateContainerId(s: string, field = "containerId"): string {
  return validateIdent(s, "container ID", "container-id-invalid", field);
}

/** Docker's network name rule: ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$, at most 128 characters. */
export function validateNetworkName(s: string, field = "name"): string {
  return validateIdent(s, "network name", "network-name-invalid", field);
}

/** RFC 1123 label: 1-63 letters, digits and hyphens, not starting or ending with a hyphen. */
export function validateDnsLabel(s: string, field?: string): string {
  const code = "dns-label-invalid";
  requireString(s, "DNS label", code, field);
  const bad = (reason: string): never => {
    throw invalid(code, `DNS label ${quote(s)} ${reason}`, field);
  };
  if (s === "") bad("is empty");
  if (s.length > 63) bad(`is ${s.length} characters; at most 63 are allowed`);
  let pos = 0;
  for (const c of s) {
    pos++;
    if (!/^[A-Za-z0-9-]$/.test(c)) bad(`contains ${showChar(c)} at position ${pos}; only letters, digits and "-" are allowed`);
  }
  if (s.startsWith("-")) bad(`must not start with "-"`);
  if (s.endsWith("-")) bad(`must not end with "-"`);
  return s;
}
