/**
 * Conditional requests on a file (RFC 9110 section 13): If-Match and
 * If-Unmodified-Since (412 when they fail), If-None-Match (304 when the
 * client's copy is current), and If-Range (a range only when the client's
 * partial copy is of this content; else the whole file). The validators are a
 * strong ETag derived from the file's content id and its Last-Modified date
 * (whole seconds).
 */

export interface Validators {
  /** A strong entity tag, quotes included. */
  etag: string;
  /** Last-Modified in IMF-fixdate form, or undefined when the entry has no date. */
  lastModified: string | undefined;
}

export type PreconditionOutcome = "proceed" | "not-modified" | "failed";

/**
 * The outcome of If-Match, If-Unmodified-Since, If-None-Match and
 * If-Modified-Since, in the RFC's order.
 */
export function evaluatePreconditions(
  headers: Map<string, string>,
  validators: Validators,
): PreconditionOutcome {
  const ifMatch = headers.get("if-match");
  if (ifMatch !== undefined && !_listMatches(ifMatch, validators.etag, true)) return "failed";
  // Without If-Match: a copy changed since the client's date fails (a date that
  // does not parse is ignored, as is the header for a file with no date).
  const unmodifiedSince = ifMatch === undefined ? headers.get("if-unmodified-since") : undefined;
  if (unmodifiedSince !== undefined && validators.lastModified !== undefined) {
    const sinceMs = httpDateMs(unmodifiedSince);
    if (!Number.isNaN(sinceMs) && Date.parse(validators.lastModified) > sinceMs) return "failed";
  }
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== undefined) {
    return _listMatches(ifNoneMatch, validators.etag, false) ? "not-modified" : "proceed";
  }
  const since = headers.get("if-modified-since");
  if (since !== undefined && validators.lastModified !== undefined) {
    const sinceMs = httpDateMs(since);
    if (!Number.isNaN(sinceMs) && Date.parse(validators.lastModified) <= sinceMs) {
      return "not-modified";
    }
  }
  return "proceed";
}

/** Whether an If-Range header lets a Range apply (true when there is none). */
export function ifRangeHolds(headers: Map<string, string>, validators: Validators): boolean {
  const value = headers.get("if-range")?.trim();
  if (value === undefined) return true;
  if (value.startsWith('"') || value.startsWith("W/")) return value === validators.etag;
  // A date matches only exactly: the strong comparison the RFC asks of If-Range.
  return validators.lastModified !== undefined && value === validators.lastModified;
}

/**
 * The time an HTTP-date names (RFC 9110 section 5.6.7: IMF-fixdate, or the
 * obsolete RFC 850 and asctime forms), or NaN for anything else: a header
 * with another kind of date is ignored, as the RFC asks, not guessed at.
 */
export function httpDateMs(value: string): number {
  const v = value.trim();
  const imf = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
  const rfc850 = /^[A-Z][a-z]+day, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$/;
  const asctime = /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;
  if (imf.test(v) || rfc850.test(v)) return Date.parse(v);
  // asctime has no zone: it is GMT.
  if (asctime.test(v)) return Date.parse(`${v} GMT`);
  return NaN;
}

/** The Last-Modified form of an ISO date, or undefined when it is not one. */
export function httpDate(iso: string): string | undefined {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : new Date(ms).toUTCString();
}

/**
 * Whether a list of entity tags ("*" or `"a", W/"b"`) names `etag`. Strong
 * comparison (If-Match) never matches a weak tag; weak comparison
 * (If-None-Match) ignores the W/ prefix.
 */
function _listMatches(list: string, etag: string, strong: boolean): boolean {
  if (list.trim() === "*") return true;
  for (const raw of list.split(",")) {
    const tag = raw.trim();
    if (tag.startsWith("W/")) {
      if (!strong && tag.slice(2) === etag) return true;
    } else if (tag === etag) {
      return true;
    }
  }
  return false;
}
