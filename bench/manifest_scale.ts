/**
 * How the manifest scales with the number of files: the cost of publishing
 * one more file into a manifest of 100, 10,000 (and 100,000) entries, and
 * the resident memory of an `fts serve` instance with 0 and 10,000 files in
 * its manifest: after hello only (what health probes and `fts status` send),
 * after file.get requests, and after file.list requests.
 *
 *     deno run -A bench/manifest_scale.ts [--compare OTHER/main.ts] [--large]
 *       [--memory-only] [--instance-flags "--v8-flags=..."]
 *
 * `--compare` runs the same CLI and instance figures with another checkout's
 * main.ts (say, before the manifest store): the snapshot, one entry a line, is
 * one JSON document that older fts read too. `--large` adds 100,000 entries.
 * `--instance-flags` gives the Deno flags of the instance's command line
 * (default: INSTANCE_V8_FLAGS, as the cluster starts instances; `""` for none).
 * This checkout's instance runs from the bundle the cluster starts instances
 * from (instance_bundle.ts), with no update check, as the cluster runs it;
 * from main.ts it is 3-4 MB larger (every module resolved and compiled alone).
 */
import { parseArgs } from "node:util";
import { contentIdOf, type FileEntry, OPERATOR_OWNER } from "../lib/state/manifest.ts";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { entryLine, layoutDocument, snapshotHeader } from "../lib/state/manifest_layout.ts";
import { Peer } from "../lib/client/peer.ts";
import { DENO_RUN_FLAGS, INSTANCE_V8_FLAGS } from "../lib/base/spawn.ts";
import { join } from "../lib/base/paths.ts";
import { instanceBundle } from "../lib/ops/instance_bundle.ts";
import { childEnv, residentMemory } from "./measure.ts";

/** One-more-file publishes timed in process at each size, for a median. */
const IN_PROCESS_PUBLISHES = 50;
/** CLI preloads of one more file timed at each size. */
const CLI_PRELOADS = 5;
/** file.get requests sent to the instance before its memory is read. */
const GET_REQUESTS = 200;
/** file.list requests sent to the instance before its memory is read. */
const LIST_REQUESTS = 5;
/** How long the bench waits for a reply from the instance. */
const LIST_TIMEOUT_MS = 60_000;
/** Entries in the manifest the instance serves. */
const SERVED_ENTRIES = 10_000;
/** The shape of the cluster scaleDataDir() records: instances, R and part size. */
export const SCALE_SERVERS = 6;
export const SCALE_REPLICAS = 3;
export const SCALE_PART_BYTES = 4096;

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Entry `index` of a synthetic manifest: one 1000-byte part on `replicas`. */
export function scaleEntry(index: number, replicas = ["9001", "9002", "9003"]): FileEntry {
  const digest = (index + 1).toString(16).padStart(64, "0");
  const parts = [{ digest, size: 1000, replicas }];
  return {
    name: `file-${String(index).padStart(6, "0")}.bin`,
    size: 1000,
    partSize: SCALE_PART_BYTES,
    contentId: contentIdOf(1000, parts),
    owner: OPERATOR_OWNER,
    created: new Date(0).toISOString(),
    parts,
  };
}

/** A data directory with a config and a snapshot of `count` entries (older fts read it too). */
export async function scaleDataDir(count: number, basePort: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "fts-manifest-scale-" });
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify({
      format: "fts-config",
      version: 1,
      host: "127.0.0.1",
      basePort,
      servers: SCALE_SERVERS,
      replicas: SCALE_REPLICAS,
      partSize: SCALE_PART_BYTES,
    }),
  );
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const entry = scaleEntry(i);
    lines.push(entryLine(entry.name, JSON.stringify(entry)));
  }
  await Deno.writeTextFile(join(dir, "manifest.json"), layoutDocument(snapshotHeader(1), lines));
  return dir;
}

function _median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Median ms of one change putting one new entry, through a store kept open. */
async function _inProcess(
  count: number,
): Promise<{ openMs: number; medianMs: number; meanMs: number }> {
  const dir = await scaleDataDir(count, 9001);
  try {
    const store = new FileManifestStore(dir);
    await store.change(
      ["warm-up"],
      () => ({ puts: [{ ...scaleEntry(count), name: "warm-up" }], result: 0 }),
    );
    const opened = performance.now();
    // A get, not revision(): revision() reads only the headers until an entry is read.
    await new FileManifestStore(dir).get("absent");
    const openMs = performance.now() - opened;
    const times: number[] = [];
    for (let i = 0; i < IN_PROCESS_PUBLISHES; i++) {
      const entry = { ...scaleEntry(count + 1 + i) };
      const started = performance.now();
      await store.change([entry.name], () => ({ puts: [entry], result: 0 }));
      times.push(performance.now() - started);
    }
    // The mean includes the compactions; the median is a plain append.
    const meanMs = times.reduce((a, b) => a + b, 0) / times.length;
    return { openMs, medianMs: _median(times), meanMs };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Median ms of `fts preload` of one more small file, with the main.ts given. */
async function _cli(main: string, count: number): Promise<number> {
  const dir = await scaleDataDir(count, 9001);
  try {
    const times: number[] = [];
    for (let i = 0; i < CLI_PRELOADS; i++) {
      const file = join(dir, `new-${i}.bin`);
      await Deno.writeFile(file, crypto.getRandomValues(new Uint8Array(1000)));
      const started = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...DENO_RUN_FLAGS, main, "preload", file, "--data", dir, "--quiet"],
        stdout: "null",
        stderr: "piped",
      }).output();
      times.push(performance.now() - started);
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    }
    return _median(times);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Resident memory, in bytes, of an instance over `count` entries at each step, and its peak. */
interface _InstanceMemory {
  hello: number;
  gets: number;
  lists: number;
  hwm: number;
}

/** Resident memory of an instance after hello, after file.get and after file.list requests. */
async function _instanceMemory(
  main: string,
  count: number,
  denoFlags: readonly string[],
): Promise<_InstanceMemory> {
  const dir = await scaleDataDir(count, 9001);
  // This checkout's instance starts as the cluster starts it: from the bundle.
  const script = main === MAIN ? await instanceBundle(dir) : main;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...DENO_RUN_FLAGS, ...denoFlags, script, "serve", "--port", "0", "--data", dir],
    env: childEnv(),
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!/listening on (\S+)/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`fts serve ended before it was ready: ${seen}`);
      seen += value;
    }
    const address = /listening on (\S+)/.exec(seen)![1]!;
    // A busy machine may take seconds for the first list of a cold instance.
    const peer = await Peer.connect(address, { stallTimeoutMs: LIST_TIMEOUT_MS });
    const rss = () => residentMemory(child.pid)!.rssBytes;
    let hello: number;
    let gets: number;
    try {
      hello = rss();
      for (let i = 0; count > 0 && i < GET_REQUESTS; i++) {
        await peer.getFile(scaleEntry(Math.floor((i * count) / GET_REQUESTS)).name);
      }
      gets = rss();
      for (let i = 0; i < LIST_REQUESTS; i++) {
        const files = await peer.listFiles();
        if (files.length !== count) throw new Error(`file.list gave ${files.length} files`);
      }
    } finally {
      peer.close();
    }
    const memory = residentMemory(child.pid)!;
    reader.releaseLock();
    return { hello, gets, lists: memory.rssBytes, hwm: memory.peakBytes };
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const args = parseArgs({
    args: Deno.args,
    options: {
      compare: { type: "string" },
      large: { type: "boolean" },
      "memory-only": { type: "boolean" },
      "instance-flags": { type: "string" },
    },
  });
  const instanceFlags = (args.values["instance-flags"] ?? INSTANCE_V8_FLAGS).split(" ")
    .filter(Boolean);
  const memoryOnly = args.values["memory-only"] ?? false;
  const sizes = args.values.large ? [100, 10_000, 100_000] : [100, 10_000];
  const mains: [string, string][] = [["this", MAIN]];
  if (args.values.compare) mains.push(["compared", args.values.compare]);
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  console.log("| entries | store open (ms) | publish, median (ms) | publish, mean (ms) |");
  console.log("| ---: | ---: | ---: | ---: |");
  for (const count of memoryOnly ? [] : sizes) {
    const { openMs, medianMs, meanMs } = await _inProcess(count);
    console.log(
      `| ${count} | ${openMs.toFixed(1)} | ${medianMs.toFixed(2)} | ${meanMs.toFixed(2)} |`,
    );
  }
  console.log("\n| fts | entries | `fts preload` of one more file (ms, median) |");
  console.log("| --- | ---: | ---: |");
  for (const [label, main] of memoryOnly ? [] : mains) {
    for (const count of sizes) {
      console.log(`| ${label} | ${count} | ${(await _cli(main, count)).toFixed(0)} |`);
    }
  }
  console.log(
    `\n| fts | entries | VmRSS after hello | after ${GET_REQUESTS} file.get |` +
      ` after ${LIST_REQUESTS} file.list | VmHWM |`,
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const [label, main] of mains) {
    for (const count of [0, SERVED_ENTRIES]) {
      const { hello, gets, lists, hwm } = await _instanceMemory(main, count, instanceFlags);
      console.log(
        `| ${label} | ${count} | ${mb(hello)} | ${mb(gets)} | ${mb(lists)} | ${mb(hwm)} |`,
      );
    }
  }
}
