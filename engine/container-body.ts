/**
 * Translations between berth's container shapes and the engine's JSON.
 */
import type { ContainerInfo, ContainerSpec } from "./port.js";

const CONTAINER_STATES = new Set<ContainerInfo["state"]>(["created", "running", "paused", "restarting", "removing", "exited", "dead"]);

/** The body of POST /containers/create. */
export function createBody(spec: ContainerSpec): Record<string, unknown> {
  const ports = spec.ports ?? [];
  const hostConfig: Record<string, unknown> = {};
  if (spec.network !== undefined) hostConfig.NetworkMode = spec.network;
  if (spec.binds !== undefined && spec.binds.length > 0) hostConfig.Binds = spec.binds;
  if (spec.capDrop !== undefined && spec.capDrop.length > 0) hostConfig.CapDrop = spec.capDrop;
  if (spec.securityOpt !== undefined && spec.securityOpt.length > 0) hostConfig.SecurityOpt = spec.securityOpt;
  if (spec.pidsLimit !== undefined) hostConfig.PidsLimit = spec.pidsLimit;
  if (spec.memoryBytes !== undefined) {
    hostConfig.Memory = spec.memoryBytes;
    hostConfig.MemorySwap = spec.memoryBytes;
  }
  if (spec.cpus !== undefined) hostConfig.NanoCpus = Math.round(spec.cpus * 1e9);
  if (ports.length > 0) {
    hostConfig.PortBindings = Object.fromEntries(
      ports.map((p) => [`${p.containerPort}/tcp`, [{ HostIp: p.hostIp ?? "127.0.0.1", HostPort: String(p.hostPort) }]]),
    );
  }
  return {
    Image: spec.image,
    ...(spec.cmd ? { Cmd: spec.cmd } : {}),
    ...(spec.user !== undefined ? { User: spec.user } : {}),
    // Open for one writer: once it detaches, the container's standard input ends.
    ...(spec.openStdin ? { OpenStdin: true, StdinOnce: true } : {}),
    Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
    Labels: spec.labels ?? {},
    ...(ports.length > 0 ? { ExposedPorts: Object.fromEntries(ports.map((p) => [`${p.containerPort}/tcp`, {}])) } : {}),
    HostConfig: hostConfig,
  };
}

export function toState(status: string): ContainerInfo["state"] {
  return CONTAINER_STATES.has(status as ContainerInfo["state"]) ? (status as ContainerInfo["state"]) : "dead";
}

/** The first 12 hex digits, as the docker CLI shows container ids. */
export function short(id: string): string {
  return id.length > 12 && /^[0-9a-f]+$/.test(id) ? id.slice(0, 12) : id;
}
