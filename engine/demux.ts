/**
 * Docker multiplexes a non-TTY container's stdout and stderr into frames with an 8-byte header
 * (stream type, three zero bytes, big-endian length). A TTY container's log is raw text.
 */

export function demultiplex(buffer: Buffer): string {
  if (!looksMultiplexed(buffer)) return buffer.toString("utf8");
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const length = buffer.readUInt32BE(offset + 4);
    const start = offset + 8;
    parts.push(buffer.subarray(start, Math.min(start + length, buffer.length)));
    offset = start + length;
  }
  return Buffer.concat(parts).toString("utf8");
}

function looksMultiplexed(buffer: Buffer): boolean {
  if (buffer.length < 8) return buffer.length === 0;
  const type = buffer[0] ?? 255;
  return type <= 2 && buffer[1] === 0 && buffer[2] === 0 && buffer[3] === 0;
}
