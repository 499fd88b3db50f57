/**
 * `berth up`'s network for flow runs. The server listens on loopback, which containers reach only on the host
 * network, and there they would reach every other service on the host's loopback too. Instead, berth up puts
 * its runs on a bridge network of its own and forwards that network's gateway address (the host's address on
 * it), at the server's port, to the server: the runs reach the API and nothing else on loopback. The forwarder
 * lives in the same process as the server, so it is up exactly when the server is.
 */
import net from "node:net";
import type { Logger } from "pino";
import type { ContainerEngine } from "../engine/port.js";
import { describeError } from "../wire/errors.js";

export const UP_NETWORK = "berth-up";

export interface RunNetwork {
  network: string;
  /** The API as the runs reach it. */
  apiUrl: string;
  close(): Promise<void>;
}

/** The network and forwarder; undefined (the runs then use the host network) when they cannot be made. */
export async function upRunNetwork(engine: ContainerEngine, serverPort: number, logger: Logger): Promise<RunNetwork | undefined> {
  if (!engine.ensureNetwork) return undefined;
  let gateway: string;
  try {
    ({ gateway } = await engine.ensureNetwork(UP_NETWORK, { "berth.network": "up" }));
  } catch (err) {
    logger.warn(`could not make the Docker network ${UP_NETWORK} (${describeError(err)}): flow-run containers use the host network`);
    return undefined;
  }
  const sockets = new Set<net.Socket>();
  const forwarder = net.createServer((client) => {
    const upstream = net.connect(serverPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on("error", end);
      socket.on("close", end);
    }
    client.pipe(upstream).pipe(client);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      forwarder.once("error", reject);
      forwarder.listen(serverPort, gateway, () => {
        forwarder.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    logger.warn(`could not listen on ${gateway}:${serverPort} of the Docker network ${UP_NETWORK} (${describeError(err)}): flow-run containers use the host network`);
    return undefined;
  }
  const host = gateway.includes(":") ? `[${gateway}]` : gateway;
  return {
    network: UP_NETWORK,
    apiUrl: `http://${host}:${serverPort}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        forwarder.close(() => resolve());
      }),
  };
}
