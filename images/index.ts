/**
 * Producing the images berth needs on hosts that cannot pull: an offline Node.js base, an offline Node.js
 * build image (compiler and headers, for the Dockerfile's build stage), the berth image built on the base,
 * and a registry for compose setups and tests. Each `ensure...` returns a reference and
 * does no work when the image is already there.
 */
export type { ImageLogOptions } from "./options.js";
export { DEFAULT_NODE_IMAGE, ensureNodeBaseImage, importNodeBaseImage, nodeBaseRootfs, offlineNodeImageRef, type NodeBaseOptions } from "./node-base.js";
export {
  BUILD_PACKAGES,
  DEBIAN_SUITE,
  DEFAULT_NODE_BUILD_IMAGE,
  ensureNodeBuildImage,
  importNodeBuildImage,
  isAptCache,
  offlineNodeBuildImageRef,
  type NodeBuildOptions,
} from "./node-build.js";
export { DEFAULT_DEBIAN_MIRROR } from "./debootstrap.js";
export { ensureBerthImage, berthImageKeeper, berthImageContext, berthImageHash, berthImageInputs, readDockerfile, type BerthImageOptions } from "./berth-image.js";
export { prebuiltDockerfile } from "./prebuilt-dockerfile.js";
export { REGISTRY_CONFIG_PATH, REGISTRY_PORT, ensureRegistryImage, importRegistryImage, registryImageRef } from "./registry.js";
