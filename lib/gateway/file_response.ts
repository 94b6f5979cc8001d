/**
 * Answering GET or HEAD for one file:
 *
 * 1. Validators first: If-Match (412), If-None-Match and If-Modified-Since
 *    (304), then If-Range decides whether a Range applies.
 * 2. The range: the whole file (200), one range (206 with Content-Range), or
 *    unsatisfiable (416 with `Content-Range: bytes * /SIZE`).
 * 3. The first part the range touches is read and verified before the
 *    status line goes out: when no replica can serve it the answer is a
 *    clean 502.
 * 4. Then the parts stream in order (verified_parts.ts), each sliced to the
 *    range. A later part no replica can serve aborts the connection: the
 *    client sees fewer bytes than Content-Length, an error, never a short
 *    file that looks complete.
 */
import type { FileEntry } from "../state/manifest.ts";
import { parseByteRange, type RangeRequest } from "./byte_range.ts";
import { contentDisposition, etagOf, mediaTypeOf } from "./content_headers.ts";
import { filePath, METALINK_MEDIA_TYPE } from "./metalink.ts";
import type { BudgetShare } from "./part_budget.ts";
import { evaluatePreconditions, httpDate, ifRangeHolds, type Validators } from "./preconditions.ts";
import type { HttpRequest } from "./http_request.ts";
import type { ResponseWriter } from "./response_writer.ts";
import { type VerifiedPart, VerifiedParts } from "./verified_parts.ts";
import type { PartReader } from "../client/part_reader.ts";

export interface FileResponseContext {
  reader: PartReader;
  /** The client's share of the gateway's part budget. */
  budget: BudgetShare;
  partsInFlight: number;
  /** Counted as bytes leave and as responses are cut off. */
  counters: { bodyBytes: number; aborted: number; partsSent: number };
  log: (line: string) => void;
}

/** A response cut off mid-body because a part could not be read. */
export class ResponseAbortedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ResponseAbortedError";
  }
}

/** The headers every answer about this file carries. */
export function fileHeaders(entry: FileEntry, validators: Validators): Record<string, string> {
  return {
    "ETag": validators.etag,
    ...(validators.lastModified !== undefined ? { "Last-Modified": validators.lastModified } : {}),
    "Link": `<${filePath(entry.name)}?metalink>; rel=describedby; type="${METALINK_MEDIA_TYPE}"`,
  };
}

export function validatorsOf(entry: FileEntry): Validators {
  return { etag: etagOf(entry), lastModified: httpDate(entry.created) };
}

/** Answers a GET or HEAD for `entry`; see the steps at the top of this file. */
export async function serveFile(
  request: HttpRequest,
  entry: FileEntry,
  writer: ResponseWriter,
  context: FileResponseContext,
): Promise<void> {
  const validators = validatorsOf(entry);
  const common = fileHeaders(entry, validators);
  const outcome = evaluatePreconditions(request.headers, validators);
  if (outcome === "failed") {
    return await writer.send(
      412,
      { ...common, "Content-Type": "text/plain" },
      "Precondition failed\n",
      request.method !== "HEAD",
    );
  }
  if (outcome === "not-modified") return await writer.head(304, common);
  const range: RangeRequest = ifRangeHolds(request.headers, validators)
    ? parseByteRange(request.headers.get("range"), entry.size)
    : { kind: "whole" };
  if (range.kind === "unsatisfiable") {
    return await writer.send(
      416,
      { ...common, "Content-Range": `bytes */${entry.size}`, "Content-Type": "text/plain" },
      `Range ${request.headers.get("range")} is outside the file's ${entry.size} bytes\n`,
      request.method !== "HEAD",
    );
  }
  const start = range.kind === "range" ? range.start : 0;
  const end = range.kind === "range" ? range.end : entry.size;
  const headers: Record<string, string | number> = {
    ...common,
    "Accept-Ranges": "bytes",
    "Content-Type": mediaTypeOf(entry.name),
    "Content-Disposition": contentDisposition(entry.name),
    "Content-Length": end - start,
    ...(range.kind === "range"
      ? { "Content-Range": `bytes ${start}-${end - 1}/${entry.size}` }
      : {}),
  };
  const status = range.kind === "range" ? 206 : 200;
  if (request.method === "HEAD" || end === start) return await writer.head(status, headers);

  const partSize = entry.partSize;
  const parts = new VerifiedParts(
    entry,
    Math.floor(start / partSize),
    Math.floor((end - 1) / partSize),
    context.reader,
    context.budget,
    context.partsInFlight,
  );
  try {
    let part: VerifiedPart | undefined;
    try {
      part = await parts.next();
    } catch (error) {
      context.log(`${entry.name}: ${(error as Error).message}; answered 502`);
      return await writer.send(
        502,
        { "Content-Type": "text/plain" },
        `${(error as Error).message}\n`,
      );
    }
    await writer.head(status, headers);
    while (part !== undefined) {
      const partStart = part.index * partSize;
      const slice = part.bytes.subarray(
        Math.max(0, start - partStart),
        Math.min(part.bytes.length, end - partStart),
      );
      try {
        await writer.body(slice);
      } finally {
        parts.sent(part);
      }
      context.counters.bodyBytes += slice.length;
      context.counters.partsSent++;
      try {
        part = await parts.next();
      } catch (error) {
        context.counters.aborted++;
        writer.close();
        throw new ResponseAbortedError(
          `Aborted ${JSON.stringify(entry.name)} after ${writer.bodyBytes} of ${
            end - start
          } bytes: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
  } finally {
    parts.close();
  }
}
