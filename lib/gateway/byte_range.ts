/**
 * The Range header of a request for a file (RFC 9110 section 14): one range
 * `bytes=a-b`, `bytes=a-` or `bytes=-n` is served as it asks (206); a range
 * that cannot be satisfied (starting at or past the end, or a suffix of 0
 * bytes) is 416; a header the gateway does not understand, or a request for
 * several ranges, gets the whole file (200), as the RFC allows. An empty
 * file satisfies a suffix `bytes=-n` (n > 0) with its no bytes, which no
 * Content-Range can state: the whole (empty) file, 200.
 */

export type RangeRequest =
  | { kind: "whole" }
  /** Bytes [start, end) of the file. */
  | { kind: "range"; start: number; end: number }
  | { kind: "unsatisfiable" };

const _DIGITS = /^\d+$/;

/** What the Range header `header` asks of a file of `size` bytes. */
export function parseByteRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return { kind: "whole" };
  const match = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!match) return { kind: "whole" };
  const specs = match[1]!.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (specs.length !== 1) return { kind: "whole" };
  const spec = specs[0]!;
  const dash = spec.indexOf("-");
  if (dash < 0) return { kind: "whole" };
  const first = spec.slice(0, dash).trim();
  const last = spec.slice(dash + 1).trim();
  if (first === "") {
    if (!_DIGITS.test(last)) return { kind: "whole" };
    // A suffix longer than the file is the whole file; digits past 2^53 still are.
    const suffix = Number(last);
    if (suffix === 0) return { kind: "unsatisfiable" };
    if (size === 0) return { kind: "whole" };
    return { kind: "range", start: Math.max(0, size - suffix), end: size };
  }
  if (!_DIGITS.test(first) || (last !== "" && !_DIGITS.test(last))) return { kind: "whole" };
  // Compared as numbers, huge digit strings become huge (or Infinity) and fall out below.
  const start = Number(first);
  if (last !== "" && Number(last) < start) return { kind: "whole" };
  if (!(start < size)) return { kind: "unsatisfiable" };
  const end = last === "" ? size : Math.min(size, Number(last) + 1);
  return { kind: "range", start, end };
}
