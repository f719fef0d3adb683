/** @jsxImportSource preact */
/** Actions through the API: create a network, connect a container, with errors shown inline. */
import { useState } from "preact/hooks";
import { ApiError, api } from "./api.ts";
import type { ContainerJson, NetworkJson } from "./types.ts";

export function ErrorLine(props: { error: string | undefined; testid?: string }) {
  if (!props.error) return null;
  return (
    <p class="error" role="alert" data-testid={props.testid ?? "error"}>
      {props.error}
    </p>
  );
}

export function message(e: unknown): string {
  if (e instanceof ApiError) return e.field ? `${e.message} (${e.field})` : e.message;
  return e instanceof Error ? e.message : String(e);
}

/** "key=value" per line -> map; a line without "=" is an error. */
export function parseOptions(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const i = line.indexOf("=");
    if (i <= 0) throw new Error(`option "${line}" must be key=value`);
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

export function CreateNetworkForm(props: { onDone: (name: string) => void }) {
  const [name, setName] = useState("");
  const [driver, setDriver] = useState("bridge");
  const [subnet, setSubnet] = useState("");
  const [gateway, setGateway] = useState("");
  const [ipRange, setIpRange] = useState("");
  const [internal, setInternal] = useState(false);
  const [options, setOptions] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | undefined>();

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(undefined);
    setDone(undefined);
    setBusy(true);
    try {
      const pool: Record<string, string> = {};
      if (subnet.trim()) pool.Subnet = subnet.trim();
      if (gateway.trim()) pool.Gateway = gateway.trim();
      if (ipRange.trim()) pool.IPRange = ipRange.trim();
      const body = {
        Name: name.trim(),
        Driver: driver,
        Internal: internal,
        Options: parseOptions(options),
        IPAM: { Driver: "default", Config: Object.keys(pool).length > 0 ? [pool] : [] },
      };
      await api("POST", "/networks/create", body);
      setDone(`network ${body.Name} created`);
      props.onDone(body.Name);
      setName("");
      setSubnet("");
      setGateway("");
      setIpRange("");
      setInternal(false);
      setOptions("");
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card form" onSubmit={submit} data-testid="create-network">
      <h3>Create a network</h3>
      <div class="grid2">
        <label>
          Name
          <input name="name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="front" />
        </label>
        <label>
          Driver
          <select name="driver" value={driver} onChange={(e) => setDriver(e.currentTarget.value)}>
            <option value="bridge">bridge</option>
            <option value="macvlan">macvlan</option>
            <option value="ipvlan">ipvlan</option>
          </select>
        </label>
        <label>
          Subnet
          <input name="subnet" value={subnet} onInput={(e) => setSubnet(e.currentTarget.value)} placeholder="automatic" />
        </label>
        <label>
          Gateway
          <input name="gateway" value={gateway} onInput={(e) => setGateway(e.currentTarget.value)} placeholder="first address" />
        </label>
        <label>
          IP range
          <input name="ip-range" value={ipRange} onInput={(e) => setIpRange(e.currentTarget.value)} placeholder="whole subnet" />
        </label>
        <label class="check">
          <input type="checkbox" name="internal" checked={internal} onChange={(e) => setInternal(e.currentTarget.checked)} />
          internal (no traffic in or out)
        </label>
      </div>
      <label>
        Options (key=value, one per line)
        <textarea name="options" rows={2} value={options} onInput={(e) => setOptions(e.currentTarget.value)} placeholder="com.docker.network.driver.mtu=1400" />
      </label>
      <div class="row">
        <button type="submit" disabled={busy}>
          Create
        </button>
        {done && (
          <span class="ok" data-testid="create-network-ok">
            {done}
          </span>
        )}
      </div>
      <ErrorLine error={error} testid="create-network-error" />
    </form>
  );
}

export function ConnectForm(props: { network: NetworkJson; containers: ContainerJson[] }) {
  const candidates = props.containers.filter((c) => c.NetnsName !== "" && !c.Networks.some((a) => a.NetworkID === props.network.Id));
  const [picked, setContainer] = useState("");
  // the pick may have been connected meanwhile (live updates): fall back to the first candidate
  const container = candidates.some((c) => c.Name === picked) ? picked : (candidates[0]?.Name ?? "");
  const [ip, setIp] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    setError(undefined);
    setBusy(true);
    try {
      const body = { Container: container, ...(ip.trim() ? { EndpointConfig: { IPAMConfig: { IPv4Address: ip.trim() } } } : {}) };
      await api("POST", `/networks/${encodeURIComponent(props.network.Id)}/connect`, body);
      setIp("");
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="form inline" onSubmit={submit} data-testid="connect-form">
      <select key={candidates.map((c) => c.Id).join(",")} name="container" value={container} onChange={(e) => setContainer(e.currentTarget.value)} aria-label="container to connect">
        {candidates.length === 0 && <option value="">(no container to connect)</option>}
        {candidates.map((c) => (
          <option value={c.Name} key={c.Id}>
            {c.Name}
          </option>
        ))}
      </select>
      <input name="ip" value={ip} onInput={(e) => setIp(e.currentTarget.value)} placeholder="IPv4 (optional)" aria-label="IPv4 address" />
      <button type="submit" disabled={busy || candidates.length === 0}>
        Connect
      </button>
      <ErrorLine error={error} testid="connect-error" />
    </form>
  );
}

/** A button that asks for a second click before it acts; its error is shown next to it. */
export function ConfirmButton(props: { label: string; confirm: string; action: () => Promise<void>; testid: string }) {
  const [armed, setArmed] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const click = async () => {
    if (!armed) {
      setArmed(true);
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await props.action();
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
      setArmed(false);
    }
  };
  return (
    <span class="confirm">
      <button type="button" class={armed ? "danger" : "secondary"} disabled={busy} onClick={click} data-testid={props.testid}>
        {armed ? props.confirm : props.label}
      </button>
      {armed && (
        <button type="button" class="link" onClick={() => setArmed(false)}>
          cancel
        </button>
      )}
      <ErrorLine error={error} testid={`${props.testid}-error`} />
    </span>
  );
}
