/** Sizes as Docker writes them: "512m", "2g", "1.5g", "64MiB" (k, m, g, t are powers of 1024) or a number of bytes. */

const BYTE_SIZE = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i;
const UNIT_BYTES = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 } as const;

/** Docker's smallest memory limit. */
export const MIN_MEMORY_BYTES = 6 * 1024 ** 2;

/** The size in bytes, or undefined when `value` is not one. */
export function parseByteSize(value: number | string): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  const match = BYTE_SIZE.exec(value.trim());
  if (!match) return undefined;
  const bytes = Math.round(Number(match[1]) * UNIT_BYTES[match[2]!.toLowerCase() as keyof typeof UNIT_BYTES]);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Bytes for people: "1.5 GiB", "312 MiB", "900 B". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
