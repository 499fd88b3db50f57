/** Text for bounded fields: cut to `max` characters with a note saying how long it was, never refused for its length. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const note = `… [cut: ${text.length} characters]`;
  return `${text.slice(0, Math.max(0, max - note.length))}${note}`;
}

/** A duration as people read it in a message: 250ms, 1.5s, 45s, 30m, 2h. */
export function formatMs(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 120_000) return `${Number((ms / 1_000).toFixed(1))}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}
