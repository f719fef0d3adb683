/** @jsxImportSource preact */
/** Berth's nftables table as Berth renders it: sets and maps with their elements, chains with their rules. */
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.ts";
import { ErrorLine, message } from "./forms.tsx";
import type { FirewallJson } from "./types.ts";

export function FirewallPanel(props: { version: number }) {
  const [fw, setFw] = useState<FirewallJson | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    let stale = false;
    api<FirewallJson>("GET", "/berth/firewall").then(
      (f) => {
        if (!stale) {
          setFw(f);
          setError(undefined);
        }
      },
      (e) => {
        if (!stale) setError(message(e));
      },
    );
    return () => {
      stale = true;
    };
  }, [props.version]);
  return (
    <section class="card" data-testid="firewall">
      <h3>
        table {fw?.Family ?? "inet"} {fw?.Name ?? "berth"}
      </h3>
      <ErrorLine error={error} />
      {fw && (
        <>
          <p class="muted" data-testid="firewall-kernel">
            {fw.Kernel.Present ? `in the kernel: ${fw.Kernel.Rules} rules` : "not in the kernel (the reconciler restores it)"} · {fw.Comment}
          </p>
          <h4>Sets and maps</h4>
          <table class="list">
            <thead>
              <tr>
                <th>Name</th>
                <th>Type</th>
                <th>Elements</th>
              </tr>
            </thead>
            <tbody>
              {fw.Sets.map((s) => (
                <tr key={s.Name} data-testid={`set-${s.Name}`}>
                  <td class="mono">
                    {s.Kind} {s.Name}
                    {s.Flags.length > 0 && <div class="muted">{s.Flags.join(", ")}</div>}
                  </td>
                  <td class="mono small">{s.Type}</td>
                  <td class="mono">
                    {s.Elements.length === 0 ? (
                      <span class="muted">empty</span>
                    ) : (
                      <ul class="elements">
                        {s.Elements.map((e) => (
                          <li key={e}>{e}</li>
                        ))}
                      </ul>
                    )}
                    {fw.Kernel.Present && fw.Kernel.Elements[s.Name] !== undefined && fw.Kernel.Elements[s.Name] !== s.Elements.length && (
                      <div class="warn">kernel holds {fw.Kernel.Elements[s.Name]}</div>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <h4>Chains</h4>
          {fw.Chains.map((c) => (
            <div key={c.Name} class="chain">
              <div class="mono">
                <b>chain {c.Name}</b> <span class="muted">{c.Base}</span>
              </div>
              <ol class="mono rules">
                {c.Rules.map((r) => (
                  <li key={r}>{r}</li>
                ))}
              </ol>
            </div>
          ))}
          <details>
            <summary>nft text</summary>
            <pre class="mono">{fw.Text}</pre>
          </details>
        </>
      )}
    </section>
  );
}
