/**
 * Bounds on free-form JSON (run parameters, environment metadata, parameter defaults). A value nested deep
 * enough exhausts the stack of whatever recurses over it later (JSON.stringify, a serializer, a client), so
 * the server refuses it where it enters, by reading the request text with an explicit stack rather than
 * recursion, and names where the nesting went too deep.
 */

/** Deepest nesting of objects and arrays a request may carry. */
export const MAX_JSON_DEPTH = 64;

/**
 * Where `text` (JSON) nests deeper than `maxDepth`: the key path of the first object or array past the limit,
 * like "environment.metadata.a.a[0]"; undefined when it does not. Reads the text once, iteratively; it does
 * not validate the JSON (the parser does that next).
 */
export function tooDeep(text: string, maxDepth = MAX_JSON_DEPTH): string | undefined {
  // One frame per open object or array: its kind and the key or index being read inside it.
  const frames: { array: boolean; key: string; index: number }[] = [];
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i + 1;
      for (i = start; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      const top = frames[frames.length - 1];
      if (top && !top.array && expectingKey) {
        top.key = safeKey(text.slice(start, i));
        expectingKey = false;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (frames.length >= maxDepth) return pathOf(frames);
      frames.push({ array: c === 0x5b, key: "", index: 0 });
      expectingKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      frames.pop();
      expectingKey = false;
    } else if (c === 0x2c /* , */) {
      const top = frames[frames.length - 1];
      if (top?.array) top.index++;
      else expectingKey = true;
    }
  }
  return undefined;
}

function pathOf(frames: readonly { array: boolean; key: string; index: number }[]): string {
  let path = "";
  for (const frame of frames) path += frame.array ? `[${frame.index}]` : path === "" ? frame.key : `.${frame.key}`;
  return path || "(the body)";
}

/** Keys come from users: a path in an error message gets a readable, bounded form of them. */
function safeKey(raw: string): string {
  const key = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw;
  return /^[\w$-]*$/.test(key) ? key : JSON.stringify(key);
}

/**
 * `value` with everything nested deeper than `maxDepth` replaced by a short note: for values stored before
 * the bound existed. Iterative; never recurses.
 */
export function cutDeep(value: unknown, maxDepth = MAX_JSON_DEPTH): unknown {
  if (typeof value !== "object" || value === null) return value;
  const note = `[removed: nested deeper than ${maxDepth} levels]`;
  const root: Record<string, unknown> | unknown[] = Array.isArray(value) ? [] : {};
  const stack: { from: object; to: Record<string, unknown> | unknown[]; depth: number }[] = [{ from: value, to: root, depth: 1 }];
  for (let frame = stack.pop(); frame !== undefined; frame = stack.pop()) {
    for (const [key, item] of Object.entries(frame.from)) {
      let copy: unknown = item;
      if (typeof item === "object" && item !== null) {
        if (frame.depth >= maxDepth) copy = note;
        else {
          const to: Record<string, unknown> | unknown[] = Array.isArray(item) ? [] : {};
          stack.push({ from: item, to, depth: frame.depth + 1 });
          copy = to;
        }
      }
      if (Array.isArray(frame.to)) frame.to.push(copy);
      else frame.to[key] = copy;
    }
  }
  return root;
}
