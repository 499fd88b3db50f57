/**
 * Producing the images berth needs on hosts that cannot pull: an offline Node.js base, the berth
 * image built on it, and a registry for compose setups and tests. Each `ensure...` returns a reference and
 * does no work when the image is already there.
 */
export type { ImageLogOptions } from "./options.js";
export { DEFAULT_NODE_IMAGE, ensureNodeBaseImage, importNodeBaseImage, nodeBaseRootfs, offlineNodeImageRef, type NodeBaseOptions } from "./node-base.js";
export { ensureBerthImage, berthImageContext, berthImageHash, type BerthImageOptions } from "./berth-image.js";
export { REGISTRY_CONFIG_PATH, REGISTRY_PORT, ensureRegistryImage, importRegistryImage, registryImageRef } from "./registry.js";
