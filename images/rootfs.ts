/**
 * The skeleton every offline image shares: a Debian-like merged-/usr layout (so Dockerfiles written for
 * `node:*-bookworm-slim` find things where they expect them), users, name-service config, /tmp, and a shell
 * with basic utilities from busybox-static.
 */
import { addExecutable, findHostFile, requireHostFile, runHostCommand } from "./host-files.js";
import { TarTree } from "../shared/tar-tree.js";

export const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Debian's CA bundle path, the same in the image as on the host. */
export const CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

const BUSYBOX_HINT = "install Debian's busybox-static (apt-get install -y busybox-static)";
const BUSYBOX_CANDIDATES = ["/bin/busybox", "/usr/bin/busybox"];

const PASSWD = "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP = "root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n";
const NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n";

/** Directories, users and config files; no executables yet. */
export function baseRootfs(): TarTree {
  const tree = new TarTree();
  for (const dir of ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "usr/local/bin", "usr/local/lib", "etc", "var/tmp", "home", "dev", "proc", "sys"]) {
    tree.dir(dir);
  }
  for (const top of ["bin", "sbin", "lib", "lib64"]) tree.symlink(top, `usr/${top}`);
  return tree
    .dir("tmp", { mode: 0o1777 })
    .dir("var/tmp", { mode: 0o1777 })
    .dir("root", { mode: 0o700 })
    .dir("home/node", { uid: 1000, gid: 1000 })
    .data("etc/passwd", PASSWD)
    .data("etc/group", GROUP)
    .data("etc/nsswitch.conf", NSSWITCH)
    .data("etc/os-release", 'NAME="berth offline base"\nID=berth\n');
}

/** /bin/sh and the usual utilities, as links to one static busybox binary. */
export async function addBusybox(tree: TarTree, signal?: AbortSignal): Promise<void> {
  const busybox = await findHostFile(BUSYBOX_CANDIDATES, BUSYBOX_HINT);
  await addExecutable(tree, busybox, "/usr/bin/busybox", signal);
  const listing = await runHostCommand(busybox, ["--list-full"], signal ? { signal } : {});
  for (const applet of listing.split("\n").map((l) => l.trim()).filter(Boolean).sort()) {
    // Applets never replace a real program already in the image (node, npm, the registry).
    if (!tree.has(applet)) tree.symlink(applet, "/usr/bin/busybox");
  }
}

/** CA certificates, when the host has them: npm and user code that fetch over TLS with OpenSSL defaults need them. */
export async function addCaCertificates(tree: TarTree): Promise<boolean> {
  try {
    const bundle = await requireHostFile(CA_BUNDLE, "install Debian's ca-certificates");
    await tree.hostFile(CA_BUNDLE, bundle);
    return true;
  } catch {
    // Node carries its own root certificates; a host without the bundle still gives a working image.
    return false;
  }
}
