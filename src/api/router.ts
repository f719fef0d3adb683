/** Routes an API request to the handler that owns its path. */
import type { Controller } from "../controller/controller.ts";
import { notFound } from "../errors.ts";
import type { ContainerRuntime } from "../runtime/containers.ts";
import { handleContainers } from "./containers.ts";
import { handleDns } from "./dns.ts";
import { type ApiRequest, type ApiResponse, errorResponse, ok } from "./http.ts";
import { handleNetworks } from "./networks.ts";
import { handleStats } from "./observe.ts";
import { handleViews } from "./views.ts";

export const API_VERSION = "1.41";
export const BERTH_VERSION = "0.1.0";

export async function route(ctl: Controller, rt: ContainerRuntime, req: ApiRequest): Promise<ApiResponse> {
  try {
    if (req.path === "/_ping") return { status: 200, text: "OK" };
    if (req.path === "/version") {
      return ok({ Version: BERTH_VERSION, ApiVersion: API_VERSION, MinAPIVersion: "1.24", Os: "linux", Arch: "amd64", Components: [{ Name: "berthd", Version: BERTH_VERSION }] });
    }
    const r = (await handleStats(rt, req)) ?? (await handleViews(ctl, rt, req)) ?? (await handleDns(rt, req)) ?? (await handleContainers(rt, ctl, req)) ?? (await handleNetworks(ctl, req));
    if (r) return r;
    throw notFound("no-route", `page not found: ${req.method} ${req.path}`);
  } catch (e) {
    return errorResponse(e);
  }
}
