/** @jsxImportSource preact */
/** Details of one network or one container, with the actions that belong to it. */
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.ts";
import { ConfirmButton, ConnectForm, ErrorLine, message } from "./forms.tsx";
import { bits, bytes, portText, short } from "./format.ts";
import { driverColour } from "./graph-model.ts";
import type { ContainerJson, DnsName, InterfacesJson, NetworkJson, Topology } from "./types.ts";

function KeyValues(props: { values: Record<string, string> | null; empty: string }) {
  const entries = Object.entries(props.values ?? {});
  if (entries.length === 0) return <p class="muted">{props.empty}</p>;
  return (
    <table class="kv">
      <tbody>
        {entries.map(([k, v]) => (
          <tr key={k}>
            <th>{k}</th>
            <td>{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function UsageBar(props: { subnet: string; size: number; allocated: number; reserved: number }) {
  const used = props.allocated + props.reserved;
  const pct = props.size > 0 ? Math.min(100, (used / props.size) * 100) : 0;
  return (
    <div class="usage" data-testid="ipam-usage">
      <div class="bar" title={`${used} of ${props.size} addresses used in ${props.subnet}`}>
        <div class="fill reserved" style={{ width: `${props.size > 0 ? (props.reserved / props.size) * 100 : 0}%` }} />
        <div class="fill allocated" style={{ width: `${props.size > 0 ? (props.allocated / props.size) * 100 : 0}%` }} />
      </div>
      <span class="muted">
        {props.subnet}: {props.allocated} allocated + {props.reserved} reserved of {props.size} ({pct < 1 && used > 0 ? "<1" : Math.round(pct)}%)
      </span>
    </div>
  );
}

export function NetworkDetails(props: { network: NetworkJson; topology: Topology; dns: DnsName[]; onRemoved: () => void }) {
  const n = props.network;
  const [error, setError] = useState<string | undefined>();
  const names = props.dns.filter((d) => d.networkId === n.Id);
  const byName = new Map<string, string[]>();
  for (const d of names) byName.set(d.name, [...(byName.get(d.name) ?? []), d.address]);
  const disconnect = async (containerId: string) => {
    setError(undefined);
    try {
      await api("POST", `/networks/${encodeURIComponent(n.Id)}/disconnect`, { Container: containerId });
    } catch (e) {
      setError(message(e));
    }
  };
  const bridge = (n.BerthDriverState as { bridge?: string } | undefined)?.bridge;
  return (
    <section class="card" data-testid="network-details" data-network={n.Name}>
      <h3>
        <span class="chip" style={{ background: driverColour(n.Driver) }}>
          {n.Driver}
        </span>{" "}
        {n.Name}
      </h3>
      <table class="kv">
        <tbody>
          <tr>
            <th>ID</th>
            <td class="mono">{short(n.Id)}</td>
          </tr>
          <tr>
            <th>Scope</th>
            <td>{n.Scope}</td>
          </tr>
          {bridge && (
            <tr>
              <th>Bridge</th>
              <td class="mono">{bridge}</td>
            </tr>
          )}
          <tr>
            <th>Internal</th>
            <td>{n.Internal ? "yes: no traffic in or out" : "no"}</td>
          </tr>
          <tr>
            <th>IPv6</th>
            <td>{n.EnableIPv6 ? "yes" : "no"}</td>
          </tr>
          {n.IPAM.Config.map((c) => (
            <tr key={c.Subnet}>
              <th>Subnet</th>
              <td class="mono" data-testid="subnet">
                {c.Subnet}
                {c.Gateway ? `  gateway ${c.Gateway}` : ""}
                {c.IPRange ? `  range ${c.IPRange}` : ""}
                {c.AuxiliaryAddresses
                  ? `  aux ${Object.entries(c.AuxiliaryAddresses)
                      .map(([k, v]) => `${k}=${v}`)
                      .join(", ")}`
                  : ""}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {n.IPAMUtilisation.map((u) => (
        <UsageBar key={u.Subnet} subnet={u.Subnet} size={u.Size} allocated={u.Allocated} reserved={u.Reserved} />
      ))}
      <h4>Options</h4>
      <KeyValues values={n.Options} empty="no options" />
      {Object.keys(n.Labels ?? {}).length > 0 && (
        <>
          <h4>Labels</h4>
          <KeyValues values={n.Labels} empty="" />
        </>
      )}
      <h4>Containers</h4>
      {Object.keys(n.Containers).length === 0 ? (
        <p class="muted">no containers</p>
      ) : (
        <table class="list" data-testid="network-containers">
          <thead>
            <tr>
              <th>Name</th>
              <th>IPv4</th>
              <th>IPv6</th>
              <th>MAC</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {Object.entries(n.Containers).map(([id, ep]) => (
              <tr key={id}>
                <td>{ep.Name}</td>
                <td class="mono">{ep.IPv4Address}</td>
                <td class="mono">{ep.IPv6Address}</td>
                <td class="mono">{ep.MacAddress}</td>
                <td>
                  {props.topology.Containers.some((c) => c.Id === id) && (
                    <button type="button" class="secondary small" onClick={() => disconnect(id)} data-testid={`disconnect-${ep.Name}`}>
                      Disconnect
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ErrorLine error={error} testid="disconnect-error" />
      <h4>Connect a container</h4>
      <ConnectForm network={n} containers={props.topology.Containers} />
      <h4>DNS names</h4>
      {byName.size === 0 ? (
        <p class="muted">no names (the embedded DNS answers for containers' names and aliases)</p>
      ) : (
        <table class="list" data-testid="dns-names">
          <tbody>
            {[...byName.entries()].map(([name, addrs]) => (
              <tr key={name}>
                <td>{name}</td>
                <td class="mono">{addrs.join(", ")}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="actions">
        <ConfirmButton
          label="Remove network"
          confirm={`Really remove ${n.Name}?`}
          testid="remove-network"
          action={async () => {
            await api("DELETE", `/networks/${encodeURIComponent(n.Id)}`);
            props.onRemoved();
          }}
        />
      </div>
    </section>
  );
}

export function ContainerDetails(props: { container: ContainerJson; topology: Topology; version: number }) {
  const c = props.container;
  const [kernel, setKernel] = useState<InterfacesJson | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [kernelError, setKernelError] = useState<string | undefined>();
  useEffect(() => {
    let stale = false;
    api<InterfacesJson>("GET", `/berth/containers/${encodeURIComponent(c.Id)}/interfaces`).then(
      (k) => {
        if (!stale) {
          setKernel(k);
          setKernelError(undefined);
        }
      },
      (e) => {
        if (!stale) setKernelError(message(e));
      },
    );
    return () => {
      stale = true;
    };
  }, [c.Id, props.version]);
  const netName = (id: string) => props.topology.Networks.find((n) => n.Id === id)?.Name ?? short(id);
  const l = c.Limits;
  const limits: Record<string, string> = {};
  if (l.memoryBytes !== undefined) limits.memory = bytes(l.memoryBytes);
  if (l.cpus !== undefined) limits.cpus = String(l.cpus);
  if (l.pids !== undefined) limits.pids = String(l.pids);
  if (l.ingressRate !== undefined) limits["ingress rate"] = bits(l.ingressRate);
  if (l.egressRate !== undefined) limits["egress rate"] = bits(l.egressRate);
  const ports = c.Networks.flatMap((a) => a.Ports);
  const disconnect = async (networkId: string) => {
    setError(undefined);
    try {
      await api("POST", `/networks/${encodeURIComponent(networkId)}/disconnect`, { Container: c.Id });
    } catch (e) {
      setError(message(e));
    }
  };
  return (
    <section class="card" data-testid="container-details" data-container={c.Name}>
      <h3>
        <span class={`chip state-${c.State}`}>{c.State}</span> {c.Name}
      </h3>
      <table class="kv">
        <tbody>
          <tr>
            <th>ID</th>
            <td class="mono">{short(c.Id)}</td>
          </tr>
          <tr>
            <th>Command</th>
            <td class="mono">{c.Command.join(" ")}</td>
          </tr>
          <tr>
            <th>PID</th>
            <td>{c.Pid ?? "-"}</td>
          </tr>
          <tr>
            <th>Netns</th>
            <td class="mono">{c.NetnsName || "host"}</td>
          </tr>
        </tbody>
      </table>
      <h4>Limits</h4>
      <KeyValues values={limits} empty="no limits" />
      <h4>Networks</h4>
      <table class="list" data-testid="container-networks">
        <thead>
          <tr>
            <th>If</th>
            <th>Network</th>
            <th>Addresses</th>
            <th>MAC</th>
            <th>Gateway</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {c.Networks.map((a) => (
            <tr key={a.EndpointID}>
              <td class="mono">{a.Ifname}</td>
              <td>{netName(a.NetworkID)}</td>
              <td class="mono">{a.Addresses.join(" ")}</td>
              <td class="mono">{a.MacAddress}</td>
              <td class="mono">{a.Gateways.join(" ")}</td>
              <td>
                <button type="button" class="secondary small" onClick={() => disconnect(a.NetworkID)}>
                  Disconnect
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <ErrorLine error={error} testid="container-disconnect-error" />
      <h4>Published ports</h4>
      {ports.length === 0 ? (
        <p class="muted">none</p>
      ) : (
        <ul data-testid="container-ports">
          {ports.map((p) => (
            <li class="mono" key={portText(p)}>
              {portText(p)}
            </li>
          ))}
        </ul>
      )}
      <h4>In the kernel</h4>
      <ErrorLine error={kernelError} />
      {kernel && (
        <>
          <table class="list" data-testid="kernel-interfaces">
            <thead>
              <tr>
                <th>Interface</th>
                <th>State</th>
                <th>MTU</th>
                <th>MAC</th>
                <th>Addresses</th>
              </tr>
            </thead>
            <tbody>
              {kernel.Interfaces.map((i) => (
                <tr key={i.Name}>
                  <td class="mono">
                    {i.Name}
                    {i.Kind ? ` (${i.Kind})` : ""}
                  </td>
                  <td>{i.Up ? i.OperState.toLowerCase() : "down"}</td>
                  <td>{i.Mtu}</td>
                  <td class="mono">{i.MacAddress}</td>
                  <td class="mono">{i.Addresses.map((a) => a.Address).join(" ")}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <table class="list" data-testid="kernel-routes">
            <thead>
              <tr>
                <th>Route</th>
                <th>Via</th>
                <th>Dev</th>
              </tr>
            </thead>
            <tbody>
              {kernel.Routes.map((r) => (
                <tr key={`${r.Destination}-${r.Device}-${r.Gateway}`}>
                  <td class="mono">{r.Destination}</td>
                  <td class="mono">{r.Gateway}</td>
                  <td class="mono">{r.Device}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
