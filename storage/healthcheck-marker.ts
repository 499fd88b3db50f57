/** Printed by the in-image healthcheck before each failed check, so the builder can report it by name. */
export const HEALTHCHECK_FAILED_MARKER = "BERTH_HEALTHCHECK_FAILED";
