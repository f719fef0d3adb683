/** Small formatting helpers for the panels. */

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

export function bits(n: number): string {
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

export function short(id: string): string {
  return id.slice(0, 12);
}

export function portText(p: { HostIp: string; HostPort: number; ContainerPort: number; Protocol: string }): string {
  return `${p.HostIp || "0.0.0.0"}:${p.HostPort} → ${p.ContainerPort}/${p.Protocol}`;
}
