/**
 * The gateway's index: every file with its size, health, a download link
 * and a Metalink link, as an HTML page that works without JavaScript (and
 * reads well in a text browser), or as JSON for scripts (`/?format=json`).
 */
import { formatBytes } from "../base/units.ts";
import type { FileRow } from "./cluster_files.ts";
import { escapeXml as escapeHtml, filePath } from "./metalink.ts";

/** One file as the JSON index lists it; links are relative to the gateway. */
export interface IndexFile {
  name: string;
  size: number;
  parts: number;
  health: FileRow["health"];
  etag: string | undefined;
  created: string;
  url: string;
  metalink: string;
}

export function indexFiles(rows: readonly FileRow[]): IndexFile[] {
  const names = new Set(rows.map((row) => row.name));
  return rows.map((row) => ({
    name: row.name,
    size: row.size,
    parts: row.parts,
    health: row.health,
    etag: row.contentId !== undefined ? `"${row.contentId}"` : undefined,
    created: row.created,
    url: filePath(row.name),
    // NAME.meta4 reads best, unless the cluster holds a file of that name.
    metalink: `${filePath(row.name)}${names.has(`${row.name}.meta4`) ? "?metalink" : ".meta4"}`,
  }));
}

/** The HTML index page. */
export function indexHtml(rows: readonly FileRow[]): string {
  const body = indexFiles(rows).map((f) =>
    [
      `<tr data-name="${escapeHtml(f.name)}" data-size="${f.size}">`,
      `<td class="name"><a href="${escapeHtml(f.url)}" download>${escapeHtml(f.name)}</a></td>`,
      `<td class="size" title="${f.size} bytes">${formatBytes(f.size)}</td>`,
      `<td class="health ${f.health}">${f.health}</td>`,
      `<td class="metalink"><a href="${escapeHtml(f.metalink)}">metalink</a></td>`,
      `</tr>`,
    ].join("")
  );
  return [
    `<!doctype html>`,
    `<html lang="en"><head><meta charset="utf-8">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>fts: ${rows.length} files</title>`,
    `<style>`,
    `body{font-family:system-ui,sans-serif;margin:2em;color:#222}`,
    `table{border-collapse:collapse}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}`,
    `td.size{text-align:right;font-variant-numeric:tabular-nums}`,
    `.healthy{color:#17702b}.degraded{color:#a86400}.unavailable{color:#b00020}.unknown{color:#777}`,
    `</style></head><body>`,
    `<h1>Files in the cluster</h1>`,
    rows.length === 0 ? `<p>No files yet (fts preload FILE or fts upload FILE adds one).</p>` : [
      `<table id="files"><thead><tr><th>Name</th><th>Size</th><th>Health</th><th>Metalink</th></tr></thead>`,
      `<tbody>`,
      ...body,
      `</tbody></table>`,
    ].join("\n"),
    `<p>Also as <a href="/?format=json">JSON</a>. Every part is checked against its digest before it is sent.</p>`,
    `</body></html>`,
    ``,
  ].join("\n");
}

/** The 404 page for an unknown name, linking the nearest name the cluster holds. */
export function notFoundHtml(name: string, nearest: string | undefined): string {
  const hint = nearest !== undefined
    ? `<p>Did you mean <a href="${escapeHtml(filePath(nearest))}">${escapeHtml(nearest)}</a>?</p>`
    : "";
  return [
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found</title></head><body>`,
    `<h1>No file named ${escapeHtml(JSON.stringify(name))}</h1>`,
    hint,
    `<p><a href="/">All files</a></p>`,
    `</body></html>`,
    ``,
  ].join("\n");
}
