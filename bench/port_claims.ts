/**
 * Free port ranges, claimed for every test and benchmark module and process
 * on this machine. `deno test --parallel` runs each module in its own isolate, so a
 * set in memory only keeps one module's clusters apart; a test that kills an
 * instance leaves its port free for a while, and another module (or a second
 * test run) looking for free ports must not take it. A claim is a file named
 * after the port holding the claiming process's pid; claims of processes that
 * are gone are stale and taken over.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findFreePortRange } from "../lib/base/ports.ts";
import { processAlive } from "../lib/base/fs_util.ts";

const CLAIM_DIR = join(tmpdir(), "fts-test-ports");
/** Free ranges tried before giving up: each may be claimed by someone else. */
const FREE_RANGE_ATTEMPTS = 50;

/** Ports this module claimed, released when it unloads. */
const _mine = new Set<number>();

globalThis.addEventListener("unload", () => {
  for (const port of _mine) _release(port);
});

/**
 * A run of `count` consecutive loopback ports that are free right now and not
 * claimed by another test or benchmark, in any module or process (a killed
 * instance's port is free, not unused). lib/base/ports.ts picks random bases
 * below the kernel's ephemeral range, so a killed instance's port is not taken
 * as some connection's source port before it restarts.
 */
export function freePortRange(count: number): number {
  for (let attempt = 0; attempt < FREE_RANGE_ATTEMPTS; attempt++) {
    const base = findFreePortRange(count);
    if (claimPortRange(base, count)) return base;
  }
  throw new Error(`No free range of ${count} ports found`);
}

/**
 * Claims ports `base` to `base + count - 1` for this test module; false (and
 * nothing claimed) when another module or test process holds one of them.
 */
export function claimPortRange(base: number, count: number): boolean {
  Deno.mkdirSync(CLAIM_DIR, { recursive: true });
  const claimed: number[] = [];
  for (let port = base; port < base + count; port++) {
    if (!_claim(port)) {
      for (const done of claimed) _release(done);
      return false;
    }
    claimed.push(port);
  }
  return true;
}

function _claim(port: number): boolean {
  if (_mine.has(port)) return false;
  const path = join(CLAIM_DIR, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      Deno.writeTextFileSync(path, String(Deno.pid), { createNew: true });
      _mine.add(port);
      return true;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch {
      continue; // released meanwhile: try again
    }
    // Empty: being written right now. Another module of this process, or a live
    // test process: theirs.
    const owner = Number(text);
    if (text === "" || owner === Deno.pid || processAlive(owner)) return false;
    try {
      Deno.removeSync(path);
    } catch { /* taken over by someone else meanwhile */ }
  }
  return false;
}

function _release(port: number): void {
  _mine.delete(port);
  const path = join(CLAIM_DIR, String(port));
  try {
    if (Number(Deno.readTextFileSync(path)) === Deno.pid) Deno.removeSync(path);
  } catch { /* already gone */ }
}
