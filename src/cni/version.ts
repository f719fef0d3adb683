/** CNI spec versions Berth speaks, and version comparison. */
import { CNI_ERR, cniError } from "./errors.ts";

export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export const LATEST = "1.1.0";

export function parseVersion(v: string): [number, number, number] {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  if (!m) throw cniError(CNI_ERR.incompatibleVersion, `invalid cniVersion ${JSON.stringify(v)}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

export function requireSupported(v: string | undefined): string {
  const ver = v ?? "0.1.0";
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(ver)) {
    throw cniError(
      CNI_ERR.incompatibleVersion,
      `incompatible CNI versions: config is ${JSON.stringify(ver)}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  }
  return ver;
}

export function atLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}
