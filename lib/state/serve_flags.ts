/**
 * The flags the last `fts cluster` gave its instances (TLS, --limit-rate) and
 * the CA they were told to trust, kept in the data directory. An instance
 * started later without a supervisor (`fts start PORT` after the cluster
 * stopped) gets the same, so it never comes back without TLS, say, beside
 * instances that serve with it.
 */
import { dataPaths } from "./config.ts";
import { readJsonFile, writeFileAtomic } from "../base/fs_util.ts";

export const SERVE_FLAGS_FORMAT = "fts-serve-flags";

export interface ServeFlags {
  /** Extra `fts serve` arguments, paths absolute. */
  args: string[];
  /** FTS_TLS_CA as the instances saw it (absolute), if set. */
  tlsCa?: string;
}

export async function saveServeFlags(dir: string, flags: ServeFlags): Promise<void> {
  await writeFileAtomic(
    dataPaths(dir).serveFlags,
    JSON.stringify({ format: SERVE_FLAGS_FORMAT, ...flags }, null, 2) + "\n",
  );
}

/**
 * The recorded flags; none recorded (no cluster ever ran here) gives no
 * flags. A damaged record is an error, never a silent start without them.
 */
export async function loadServeFlags(dir: string): Promise<ServeFlags> {
  const path = dataPaths(dir).serveFlags;
  const value = await readJsonFile(path) as Record<string, unknown> | undefined;
  if (value === undefined) return { args: [] };
  const { format, args, tlsCa } = value ?? {};
  if (
    format !== SERVE_FLAGS_FORMAT || !Array.isArray(args) ||
    !args.every((a) => typeof a === "string") ||
    (tlsCa !== undefined && typeof tlsCa !== "string")
  ) {
    throw new Error(
      `${path} is damaged; remove it and start the instance with "fts cluster" or "fts serve" and the flags it needs`,
    );
  }
  return { args, ...(tlsCa !== undefined ? { tlsCa } : {}) };
}
