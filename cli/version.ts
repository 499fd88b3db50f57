import { packageVersion } from "../shared/package.js";

/** berth's version, from its package.json. */
export const VERSION: string = packageVersion();
