/** Options every `ensure...Image` function takes. */
export interface ImageLogOptions {
  /** Progress lines for the user ("building berth-node:20.20.2 ..."); default: silent. */
  log?: (line: string) => void;
  signal?: AbortSignal;
}
