/** @jsxImportSource preact */
/** `berth trace` from the UI: would a connection from one container (or address) to another be allowed, and why. */
import { useState } from "preact/hooks";
import { api } from "./api.ts";
import { ErrorLine, message } from "./forms.tsx";
import type { Topology, TraceJson } from "./types.ts";

export function TracePanel(props: { topology: Topology | undefined }) {
  const names = (props.topology?.Containers ?? []).map((c) => c.Name);
  const [src, setSrc] = useState("");
  const [dst, setDst] = useState("");
  const [port, setPort] = useState("80");
  const [proto, setProto] = useState("tcp");
  const [result, setResult] = useState<TraceJson | undefined>();
  const [error, setError] = useState<string | undefined>();
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(undefined);
    setResult(undefined);
    try {
      const q = new URLSearchParams({ src: src.trim(), dst: dst.trim(), port: port.trim(), proto });
      setResult(await api<TraceJson>("GET", `/berth/trace?${q}`));
    } catch (e) {
      setError(message(e));
    }
  };
  return (
    <section class="card" data-testid="trace">
      <h3>Trace a connection</h3>
      <form class="form inline" onSubmit={submit}>
        <datalist id="trace-parties">
          {names.map((n) => (
            <option value={n} key={n} />
          ))}
        </datalist>
        <input name="src" list="trace-parties" value={src} onInput={(e) => setSrc(e.currentTarget.value)} placeholder="from: container or IP" aria-label="source" />
        <input name="dst" list="trace-parties" value={dst} onInput={(e) => setDst(e.currentTarget.value)} placeholder="to: container or IP" aria-label="destination" />
        <input name="port" class="narrow" value={port} onInput={(e) => setPort(e.currentTarget.value)} aria-label="port" />
        <select name="proto" value={proto} onChange={(e) => setProto(e.currentTarget.value)} aria-label="protocol">
          <option value="tcp">tcp</option>
          <option value="udp">udp</option>
          <option value="sctp">sctp</option>
        </select>
        <button type="submit">Trace</button>
      </form>
      <ErrorLine error={error} testid="trace-error" />
      {result && (
        <div class="trace-result" data-testid="trace-result" data-verdict={result.verdict}>
          <p>
            <span class={`chip verdict-${result.verdict}`}>{result.verdict}</span> {result.reason}
          </p>
          <ol>
            {result.steps.map((s) => (
              <li key={`${s.at}-${s.note}`}>
                <b class="mono">{s.at}</b>: {s.note}
              </li>
            ))}
          </ol>
        </div>
      )}
    </section>
  );
}
