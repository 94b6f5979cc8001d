/**
 * The headers that describe a file to an HTTP client: its media type from the
 * extension, a Content-Disposition with its name (an ASCII fallback and the
 * exact UTF-8 name in `filename*`, RFC 6266 and RFC 8187), and the strong
 * ETag that names its content.
 */
import type { FileEntry } from "../state/manifest.ts";
import { filePath } from "./metalink.ts";

/** Media types by lower-case extension; anything else is application/octet-stream. */
const _MEDIA_TYPES: Record<string, string> = {
  txt: "text/plain; charset=utf-8",
  md: "text/markdown; charset=utf-8",
  csv: "text/csv; charset=utf-8",
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  xml: "application/xml",
  pdf: "application/pdf",
  zip: "application/zip",
  gz: "application/gzip",
  tgz: "application/gzip",
  tar: "application/x-tar",
  xz: "application/x-xz",
  zst: "application/zstd",
  iso: "application/x-iso9660-image",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  svg: "image/svg+xml",
  mp3: "audio/mpeg",
  ogg: "audio/ogg",
  flac: "audio/flac",
  wav: "audio/wav",
  mp4: "video/mp4",
  m4v: "video/mp4",
  mkv: "video/x-matroska",
  webm: "video/webm",
  mov: "video/quicktime",
  avi: "video/x-msvideo",
  meta4: "application/metalink4+xml",
};

export const DEFAULT_MEDIA_TYPE = "application/octet-stream";

/** The media type of a file name, from its extension. */
export function mediaTypeOf(name: string): string {
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return DEFAULT_MEDIA_TYPE;
  return _MEDIA_TYPES[name.slice(dot + 1).toLowerCase()] ?? DEFAULT_MEDIA_TYPE;
}

/** `attachment; filename="..."; filename*=UTF-8''...` for a file name. */
export function contentDisposition(name: string): string {
  // The fallback keeps printable ASCII only, without the quote and backslash
  // that would need escaping; old clients get a recognisable name.
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  const encoded = filePath(name).slice("/files/".length);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** The strong ETag of a file: its content id, which changes whenever any byte would. */
export function etagOf(entry: FileEntry): string {
  return `"${entry.contentId}"`;
}
