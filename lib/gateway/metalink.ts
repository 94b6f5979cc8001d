/**
 * A file's Metalink 4 document (RFC 5854): its name and size, the SHA-256 of
 * every part as `<pieces>` (every piece but the last is one part long, so a
 * download manager such as aria2c checks each piece it receives, and
 * `aria2c -V` re-fetches only the pieces that fail), and one `<url>` per
 * gateway that serves the cluster, so the file comes from several at once.
 * There is no whole-file hash: the cluster never computes one.
 */
import type { FileEntry } from "../state/manifest.ts";

export const METALINK_MEDIA_TYPE = "application/metalink4+xml";

/** The path a file is served at (the name percent-encoded as one segment). */
export function filePath(name: string): string {
  // encodeURIComponent leaves !'()* as they are; encoded, the path is safe in any quoting.
  const segment = encodeURIComponent(name).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `/files/${segment}`;
}

/** The Metalink document of `entry`, served by the gateways at `baseUrls` (this one first). */
export function metalinkDocument(entry: FileEntry, baseUrls: readonly string[]): string {
  const lines = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<metalink xmlns="urn:ietf:params:xml:ns:metalink">`,
    `  <generator>fts</generator>`,
    `  <file name="${escapeXml(entry.name)}">`,
    `    <size>${entry.size}</size>`,
  ];
  if (entry.parts.length > 0) {
    lines.push(`    <pieces length="${entry.partSize}" type="sha-256">`);
    for (const part of entry.parts) lines.push(`      <hash>${part.digest}</hash>`);
    lines.push(`    </pieces>`);
  }
  baseUrls.forEach((base, i) => {
    // Lower numbers first: this gateway, then the others in order.
    lines.push(
      `    <url priority="${i + 1}">${
        escapeXml(base.replace(/\/+$/, "") + filePath(entry.name))
      }</url>`,
    );
  });
  lines.push(`  </file>`, `</metalink>`, ``);
  return lines.join("\n");
}

/** Text safe inside an XML or HTML element or a quoted attribute. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
