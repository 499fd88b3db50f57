/**
 * A container registry image without a registry to pull it from: `berth-registry:<version>`, imported from
 * Debian's docker-registry binary on this host. It serves without authentication on :5000 and stores blobs
 * under /var/lib/registry; berth's compose setup and the push/pull tests run it bound to 127.0.0.1.
 */
import type { ImageLogOptions } from "./options.js";
import { addExecutable, requireHostFile, runHostCommand } from "./host-files.js";
import type { ContainerEngine } from "../engine/port.js";
import { toTag } from "../engine/refs.js";
import { IMAGE_PATH, addCaCertificates, baseRootfs } from "./rootfs.js";

const REGISTRY_BINARY = "/usr/bin/docker-registry";
const REGISTRY_HINT = "install Debian's docker-registry (apt-get install -y docker-registry)";
export const REGISTRY_CONFIG_PATH = "/etc/docker/registry/config.yml";
export const REGISTRY_PORT = 5000;

/** No auth: the registry is meant for 127.0.0.1 or a private network the project creates. */
const REGISTRY_CONFIG = `version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :${REGISTRY_PORT}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`;

export async function registryImageRef(signal?: AbortSignal): Promise<string> {
  const binary = await requireHostFile(REGISTRY_BINARY, REGISTRY_HINT);
  // "docker-registry github.com/docker/distribution 2.8.2+ds1"
  const out = await runHostCommand(binary, ["--version"], signal ? { signal } : {});
  const version = out.trim().split(/\s+/).pop() ?? "unknown";
  return `berth-registry:${toTag(version)}`;
}

export async function ensureRegistryImage(engine: ContainerEngine, options: ImageLogOptions = {}): Promise<string> {
  const ref = await registryImageRef(options.signal);
  if (await engine.imageExists(ref)) return ref;
  options.log?.(`importing ${ref} from this host's ${REGISTRY_BINARY}`);
  await importRegistryImage(engine, ref, options);
  return ref;
}

export async function importRegistryImage(engine: ContainerEngine, ref: string, options: ImageLogOptions = {}): Promise<void> {
  const { signal } = options;
  const tree = baseRootfs();
  await addExecutable(tree, await requireHostFile(REGISTRY_BINARY, REGISTRY_HINT), "/usr/bin/registry", signal);
  await addCaCertificates(tree);
  tree.data(REGISTRY_CONFIG_PATH, REGISTRY_CONFIG).dir("/var/lib/registry");
  await engine.importImage(tree.pack(signal), ref, {
    changes: [
      `ENV PATH=${IMAGE_PATH}`,
      `EXPOSE ${REGISTRY_PORT}`,
      `LABEL io.berth.image=registry`,
      `CMD ["/usr/bin/registry", "serve", "${REGISTRY_CONFIG_PATH}"]`,
    ],
    ...(signal ? { signal } : {}),
  });
}
