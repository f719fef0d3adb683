/** Query counters of the embedded resolver (in-process, and GET /berth/dns/stats). */
import { RCODE } from "./packet.ts";

export interface DnsCounters {
  /** Every query received (UDP and TCP). */
  queries: number;
  /** Answered by Berth itself (names, PTR, NODATA, errors such as FORMERR/REFUSED). */
  answeredLocally: number;
  /** Sent upstream. */
  forwarded: number;
  /** Forwards no upstream answered usefully (timeouts, SERVFAIL/REFUSED from all, overload). */
  forwardFailures: number;
  /** Replies with NXDOMAIN, local or from upstream. */
  nxdomain: number;
  servfail: number;
  formerr: number;
  refused: number;
  /** Packets ignored (too short, or responses). */
  dropped: number;
}

export class DnsStatsCounter implements DnsCounters {
  queries = 0;
  answeredLocally = 0;
  forwarded = 0;
  forwardFailures = 0;
  nxdomain = 0;
  servfail = 0;
  formerr = 0;
  refused = 0;
  dropped = 0;

  countRcode(rcode: number): void {
    if (rcode === RCODE.NXDOMAIN) this.nxdomain++;
    else if (rcode === RCODE.SERVFAIL) this.servfail++;
    else if (rcode === RCODE.FORMERR) this.formerr++;
    else if (rcode === RCODE.REFUSED) this.refused++;
  }

  snapshot(): DnsCounters {
    const { queries, answeredLocally, forwarded, forwardFailures, nxdomain, servfail, formerr, refused, dropped } = this;
    return { queries, answeredLocally, forwarded, forwardFailures, nxdomain, servfail, formerr, refused, dropped };
  }
}
