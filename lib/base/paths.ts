/**
 * POSIX path helpers with node:path's results, so that `fts serve` need not
 * load node:path: every node: module a process imports costs it megabytes of
 * resident memory, times 50 instances on one host. `.` and `..`
 * segments and repeated slashes are folded the way path.posix folds them.
 */

/** Folds `.`, `..` and empty segments; `..` above the start stays only when allowed. */
function _normalizeSegments(path: string, allowAboveRoot: boolean): string {
  const out: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (allowAboveRoot) out.push("..");
      continue;
    }
    out.push(segment);
  }
  return out.join("/");
}

export function isAbsolute(path: string): boolean {
  return path.startsWith("/");
}

/** Folds `.`, `..` and repeated slashes; keeps a trailing slash; "" becomes ".". */
export function normalize(path: string): string {
  if (path === "") return ".";
  const absolute = isAbsolute(path);
  const trailingSlash = path.endsWith("/");
  const folded = _normalizeSegments(path, !absolute);
  if (folded === "") return absolute ? "/" : trailingSlash ? "./" : ".";
  return (absolute ? "/" : "") + folded + (trailingSlash ? "/" : "");
}

/** Joins the non-empty parts with "/" and normalizes the result. */
export function join(...parts: string[]): string {
  const joined = parts.filter((part) => part !== "").join("/");
  return joined === "" ? "." : normalize(joined);
}

/** An absolute path: the parts from the right until one is absolute, then Deno.cwd(). */
export function resolve(...parts: string[]): string {
  let resolved = "";
  for (let i = parts.length - 1; i >= -1 && !isAbsolute(resolved); i--) {
    const part = i >= 0 ? parts[i]! : Deno.cwd();
    if (part !== "") resolved = resolved === "" ? part : `${part}/${resolved}`;
  }
  return `/${_normalizeSegments(resolved, false)}`;
}

/** The path without its last segment (trailing slashes ignored). */
export function dirname(path: string): string {
  if (path === "") return ".";
  const trimmed = _trimTrailingSlashes(path);
  const slash = trimmed.lastIndexOf("/");
  // The slash at index 0 is the root; repeated slashes before the last segment
  // stay as written, and a leading "//" stays "//" (as node:path has it).
  if (slash <= 0) return isAbsolute(path) ? "/" : ".";
  return slash === 1 && isAbsolute(path) ? "//" : trimmed.slice(0, slash);
}

/** The last segment of the path (trailing slashes ignored). */
export function basename(path: string): string {
  const trimmed = _trimTrailingSlashes(path);
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** The path of a file: URL, like node:url's fileURLToPath on POSIX. */
export function fromFileUrl(url: string | URL): string {
  const parsed = url instanceof URL ? url : new URL(url);
  if (parsed.protocol !== "file:") {
    throw new TypeError(`Not a file: URL: "${parsed.href}"`);
  }
  if (parsed.hostname !== "" && parsed.hostname !== "localhost") {
    throw new TypeError(`File URL must be on this host, got host "${parsed.hostname}"`);
  }
  if (/%2f/i.test(parsed.pathname)) {
    throw new TypeError(`File URL path must not contain an encoded "/": "${parsed.href}"`);
  }
  return decodeURIComponent(parsed.pathname);
}

function _trimTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 0 && path[end - 1] === "/") end--;
  return path.slice(0, end);
}
