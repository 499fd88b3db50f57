/**
 * An API URL setting may name several servers, comma-separated (replicas without a load balancer): clients
 * use the first that answers and fail over to the next when one cannot be reached.
 */

/** The URLs of a setting, trimmed, without trailing slashes; throws a plain Error naming the one that is not a URL. */
export function parseApiUrls(value: string): string[] {
  const urls = value
    .split(",")
    .map((part) => part.trim().replace(/\/+$/, ""))
    .filter((part) => part !== "");
  if (urls.length === 0) throw new Error("no URL given");
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error(`"${url}" is not a URL`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error(`"${url}" is not an http(s) URL`);
  }
  return urls;
}

/** Whether every URL of the setting is on this machine's loopback. */
export function allLoopback(value: string, isLoopbackHost: (host: string) => boolean): boolean {
  try {
    return parseApiUrls(value).every((url) => isLoopbackHost(new URL(url).hostname));
  } catch {
    return false;
  }
}
