/**
 * The writers policy of a single-host cluster, kept in `DIR/writers.json`
 * (writers_policy.ts says what it holds). A change is read, edited and
 * written under `DIR/writers.lock`, with an atomic write, so two operators
 * changing it at once both land and an instance never reads half a file.
 * No file means the open policy every new cluster has.
 */
import { withFileLock } from "../base/lock.ts";
import { writeFileAtomic } from "../base/fs_util.ts";
import { join } from "../base/paths.ts";
import {
  changePolicy,
  encodePolicy,
  openPolicy,
  parsePolicy,
  type WritersChange,
  type WritersPolicy,
} from "./writers_policy.ts";

/** The path of the writers policy of data directory `dir`. */
export function writersPath(dir: string): string {
  return join(dir, "writers.json");
}

/** The policy of data directory `dir` (open when none was ever set). */
export async function readWritersFile(dir: string): Promise<WritersPolicy> {
  const path = writersPath(dir);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return openPolicy();
    throw error;
  }
  return parsePolicy(text, path);
}

/** Applies `change` to the policy of `dir`; returns the policy now in force. */
export async function changeWritersFile(
  dir: string,
  change: WritersChange,
): Promise<WritersPolicy> {
  await Deno.mkdir(dir, { recursive: true });
  return await withFileLock(join(dir, "writers.lock"), async () => {
    const next = changePolicy(await readWritersFile(dir), change);
    await writeFileAtomic(writersPath(dir), encodePolicy(next));
    return next;
  });
}
