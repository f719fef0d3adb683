/**
 * DNS load generator for bench/scenarios/dns.ts (run inside a namespace with nsenter):
 *   bun dns-load.ts SERVER PORT NAME TYPE COUNT CONCURRENCY
 * Sends COUNT queries (after 200 warm-up ones) with CONCURRENCY loops, each
 * waiting for its reply; a query unanswered for 1 s counts as an error.
 * Prints {"p50": µs, "p99": µs, "qps": n, "errors": n, "answered": n}.
 */
import * as dnsPacket from "dns-packet";

const [server = "127.0.0.11", portS = "53", name = "srv", type = "A", countS = "2000", concS = "1"] = process.argv.slice(2);
const port = Number(portS);
const count = Number(countS);
const conc = Number(concS);

async function loop(n: number, lat: number[] | undefined): Promise<number> {
  let errors = 0;
  const pending = new Map<number, (ok: boolean) => void>();
  const sock = await Bun.udpSocket({
    socket: {
      data(_s, buf) {
        const id = buf.readUInt16BE(0);
        pending.get(id)?.(true);
      },
      // ICMP errors (nothing listening yet): the query just counts as unanswered
      error() {},
    },
  });
  for (let i = 0; i < n; i++) {
    const id = (i * 7919 + Math.floor(Math.random() * 65536)) & 0xffff;
    const q = dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as dnsPacket.RecordType, name, class: "IN" }] });
    const t0 = performance.now();
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      pending.set(id, (v) => {
        clearTimeout(timer);
        resolve(v);
      });
      sock.send(q, port, server);
    });
    pending.delete(id);
    if (!ok) errors++;
    else lat?.push((performance.now() - t0) * 1000);
  }
  sock.close();
  return errors;
}

await Promise.all(Array.from({ length: conc }, () => loop(Math.ceil(200 / conc), undefined)));
const lat: number[] = [];
const t0 = performance.now();
const errs = await Promise.all(Array.from({ length: conc }, () => loop(Math.ceil(count / conc), lat)));
const secs = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const pct = (p: number) => Math.round(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? Number.NaN);
console.log(JSON.stringify({ p50: pct(50), p99: pct(99), qps: Math.round(lat.length / secs), errors: errs.reduce((a, b) => a + b, 0), answered: lat.length }));
