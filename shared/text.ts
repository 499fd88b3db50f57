/** Text for bounded fields: cut to `max` characters with a note saying how long it was, never refused for its length. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const note = `… [cut: ${text.length} characters]`;
  return `${text.slice(0, Math.max(0, max - note.length))}${note}`;
}
