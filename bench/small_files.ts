/**
 * Scenario 9, many small files: thousands of files of 4-64 KiB (sizes and
 * bytes from a seed), preloaded into their own fts cluster and served by
 * nginx with autoindex from the same directory. Contenders, interleaved in
 * rounds: `fts fetch --all` (one process), `wget -r` (recursive through the
 * index page) and `curl -Z` (parallel, a URL list), each into an empty
 * directory on a RAM disk (see _ramDisk). Every run's directory is checked
 * against the source (a digest of the tree). Plus one file of 1,280
 * parts of 4 KiB, which fts should fetch in under a second.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DENO, MAIN } from "./fts_process.ts";
import { BenchCluster } from "./fts_cluster.ts";
import { median, runTimed } from "./measure.ts";
import { findProgram, NginxServer } from "./peers.ts";
import { freePortRange } from "./port_claims.ts";
import {
  type BenchContext,
  type Contender,
  emptyDir,
  type Figure,
  type Goal,
  rounds,
  type Run,
  type ScenarioResult,
} from "./scenarios.ts";

const KIB = 1024;
const MIN_FILE_BYTES = 4 * KIB;
const MAX_FILE_BYTES = 64 * KIB;
const SERVERS = 4;
const REPLICAS = 2;
/** The seed of the sizes and the bytes: the same files in every bench run. */
const SEED = 9;
/** Files fetched at once by fts, and transfers at once by curl (its -Z default is 50). */
const FTS_FILES_AT_ONCE = 32;
const CURL_PARALLEL = 32;
const SMALL_PARTS = 1_280;
const SMALL_PART_BYTES = 4 * KIB;
/** The goal for fts against the faster of wget and curl. */
const MAX_RATIO = 1.0;
const MAX_SMALL_PARTS_SECONDS = 1;

/** Room a RAM disk needs for the runs' destinations: three tools' copies of the files, and some. */
const RAM_DISK_MIN_BYTES = 2 * 1024 ** 3;

/**
 * /dev/shm when it is a tmpfs of at least RAM_DISK_MIN_BYTES, else undefined.
 * The runs write there so that the figures are the tools' and not the disk's
 * file system's: this VM's root is ext4 without a journal, which on every
 * create passes over each inode freed in the last minutes (2-5x the time of
 * 10,000 creates just after a run's files were removed, for every tool), and
 * fresh directories instead made the page cache grow by a run's files each
 * time, into memory the VM had handed back to its host (each page then
 * faults on the host: curl's runs went from 1.2 to 2.9 s over one bench).
 */
async function _ramDisk(): Promise<string | undefined> {
  const mounts = await Deno.readTextFile("/proc/mounts").catch(() => "");
  for (const line of mounts.split("\n")) {
    const [, mountPoint, type, options] = line.split(" ");
    if (mountPoint !== "/dev/shm" || type !== "tmpfs") continue;
    const size = /(?:^|,)size=(\d+)k(?:,|$)/.exec(options ?? "")?.[1];
    // No size option: half the memory, by default.
    if (size === undefined || Number(size) * 1024 >= RAM_DISK_MIN_BYTES) return mountPoint;
  }
  return undefined;
}

/** xorshift32: sizes and bytes from one seed. */
function _generator(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Writes `count` files of MIN..MAX_FILE_BYTES into `dir`; returns their names and bytes. */
async function _writeFiles(
  dir: string,
  count: number,
): Promise<{ names: string[]; bytes: number }> {
  const next = _generator(SEED);
  const names: string[] = [];
  let bytes = 0;
  const buffer = new Uint8Array(MAX_FILE_BYTES);
  const words = new Uint32Array(buffer.buffer);
  for (let i = 0; i < count; i++) {
    const size = MIN_FILE_BYTES + (next() % (MAX_FILE_BYTES - MIN_FILE_BYTES + 1));
    for (let w = 0; w < Math.ceil(size / 4); w++) words[w] = next();
    const name = `s-${String(i).padStart(5, "0")}.bin`;
    await Deno.writeFile(join(dir, name), buffer.subarray(0, size));
    names.push(name);
    bytes += size;
  }
  return { names, bytes };
}

/** SHA-256 over every regular file's name and bytes, in name order. */
async function _treeDigest(dir: string): Promise<{ files: number; digest: string }> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (entry.isFile) names.push(entry.name);
  names.sort();
  const tree = createHash("sha256");
  for (const name of names) {
    const bytes = await Deno.readFile(join(dir, name));
    tree.update(`${name}\0${bytes.length}\0`).update(createHash("sha256").update(bytes).digest());
  }
  return { files: names.length, digest: tree.digest("hex") };
}

async function _timed(what: string, program: string, args: string[]): Promise<Run> {
  const outcome = await runTimed(program, args);
  if (outcome.code !== 0) {
    throw new Error(
      `${what} exited with code ${outcome.code}: ${
        (outcome.stderr || outcome.stdout).slice(0, 2000)
      }`,
    );
  }
  return {
    seconds: outcome.seconds,
    ...(outcome.peakRssBytes !== undefined ? { peakRssBytes: outcome.peakRssBytes } : {}),
  };
}

function _ftsFetch(cluster: BenchCluster, target: string[], dest: string): string[] {
  return ["run", "--allow-all", "--quiet", MAIN, "fetch", ...target, dest, "--data", cluster.dir];
}

/** Scenario 9: `count` small files, and one file of 1,280 parts of 4 KiB. */
export async function smallFiles(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const wget = findProgram("wget");
  if (!wget) throw new Error("wget is missing (Debian package wget)");
  const root = join(ctx.work, "small");
  const src = join(root, "www", "files");
  await Deno.mkdir(src, { recursive: true });
  let started = performance.now();
  const { names, bytes } = await _writeFiles(src, count);
  const expected = await _treeDigest(src);
  ctx.log(
    `wrote ${count} files of 4-64 KiB in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  started = performance.now();
  const cluster = await BenchCluster.start(join(root, "data"), {
    servers: SERVERS,
    replicas: REPLICAS,
    files: names.map((name) => join(src, name)),
  });
  const preloadSeconds = (performance.now() - started) / 1000;
  ctx.log(
    `preloaded them into ${SERVERS} instances, R=${REPLICAS}, in ${preloadSeconds.toFixed(1)} s`,
  );
  const nginxProgram = findProgram("nginx");
  if (!nginxProgram) throw new Error("nginx is missing (Debian package nginx)");
  const nginx = await NginxServer.start(
    nginxProgram,
    root,
    join(root, "www"),
    freePortRange(1),
    undefined,
    {
      autoindex: true,
    },
  );
  const figures: Figure[] = [];
  const goals: Goal[] = [];
  const ram = await _ramDisk();
  const destRoot = ram ? await Deno.makeTempDir({ dir: ram, prefix: "fts-bench-small-" }) : root;
  try {
    const base = `http://127.0.0.1:${nginx.port}/files/`;
    const urlList = join(root, "urls.txt");
    const dest = (tool: string) => join(destRoot, `dest-${tool}`);
    const check = (dir: string, tool: string) => async () => {
      const got = await _treeDigest(dir);
      if (got.files !== expected.files || got.digest !== expected.digest) {
        throw new Error(
          `${tool} fetched ${got.files} files (digest ${
            got.digest.slice(0, 16)
          }), expected ${expected.files} (${expected.digest.slice(0, 16)})`,
        );
      }
    };
    await Deno.writeTextFile(
      urlList,
      names.map((name) => `url = "${base}${name}"\noutput = "${join(dest("curl"), name)}"\n`).join(
        "",
      ),
    );
    const contenders: Contender[] = [
      {
        tool: "fts fetch --all",
        prepare: () => emptyDir(dest("fts")),
        run: () =>
          _timed(
            "fts fetch --all",
            DENO,
            [
              ..._ftsFetch(cluster, ["--all"], dest("fts")),
              "--files",
              String(FTS_FILES_AT_ONCE),
              "-q",
            ],
          ),
        check: check(dest("fts"), "fts"),
      },
      {
        tool: "wget -r",
        prepare: () => emptyDir(dest("wget")),
        // -nd: the files land in one directory, like the others'; the index pages are dropped.
        run: () =>
          _timed("wget -r", wget, [
            "-q",
            "-r",
            "-np",
            "-nH",
            "-nd",
            "-R",
            "index.html*",
            "-P",
            dest("wget"),
            base,
          ]),
        check: check(dest("wget"), "wget"),
      },
      {
        tool: "curl -Z",
        prepare: () => emptyDir(dest("curl")),
        run: () =>
          _timed("curl -Z", ctx.programs.curl, [
            "-sS",
            "--fail",
            "-Z",
            "--parallel-max",
            String(CURL_PARALLEL),
            "-K",
            urlList,
          ]),
        check: check(dest("curl"), "curl"),
      },
    ];
    const scenario = `${count} small files`;
    const measured = await rounds(ctx, scenario, contenders);
    const note = `${count} files of 4-64 KiB (${
      (bytes / 2 ** 20).toFixed(1)
    } MiB); fts: ${SERVERS} instances R=${REPLICAS}, --files ${FTS_FILES_AT_ONCE}, preload took ${
      preloadSeconds.toFixed(0)
    } s; curl --parallel-max ${CURL_PARALLEL}; destinations on ${
      ram ? `a RAM disk (${ram})` : "disk (no tmpfs at /dev/shm)"
    }`;
    figures.push(...measured.map((f, i) => (i === 0 ? { ...f, note } : f)));
    const fts = median(measured[0]!.seconds);
    const fastest = Math.min(median(measured[1]!.seconds), median(measured[2]!.seconds));
    const ratio = fts / fastest;
    goals.push({
      name: `${count} small files: fts fetch --all / fastest of wget -r and curl -Z`,
      measured: `${ratio.toFixed(2)}x`,
      target: `<= ${MAX_RATIO}x`,
      met: ratio <= MAX_RATIO,
    });
  } finally {
    await nginx.stop();
    await cluster.stop();
    await Deno.remove(src, { recursive: true }).catch(() => {});
    if (destRoot !== root) await Deno.remove(destRoot, { recursive: true }).catch(() => {});
  }
  return await _smallParts(ctx, root, { figures, goals });
}

/** One file of 1,280 parts of 4 KiB, from 2 instances R=1. */
async function _smallParts(
  ctx: BenchContext,
  root: string,
  result: ScenarioResult,
): Promise<ScenarioResult> {
  const src = join(root, "parts-src");
  await Deno.mkdir(src, { recursive: true });
  const path = join(src, "parts.bin");
  const next = _generator(SEED + 1);
  const words = new Uint32Array(SMALL_PARTS * SMALL_PART_BYTES / 4);
  for (let i = 0; i < words.length; i++) words[i] = next();
  await Deno.writeFile(path, new Uint8Array(words.buffer));
  const cluster = await BenchCluster.start(join(root, "parts-data"), {
    servers: 2,
    replicas: 1,
    files: [path],
    partSize: "4KiB",
  });
  try {
    const dest = join(root, "dest-parts");
    const scenario = `${SMALL_PARTS} parts of 4 KiB`;
    const measured = await rounds(ctx, scenario, [{
      tool: "fts fetch",
      prepare: () => emptyDir(dest),
      run: () => _timed("fts fetch", DENO, [..._ftsFetch(cluster, ["parts.bin"], dest), "-q"]),
      check: async () => {
        const [a, b] = await Promise.all([
          Deno.readFile(path),
          Deno.readFile(join(dest, "parts.bin")),
        ]);
        if (a.length !== b.length || !a.every((byte, i) => byte === b[i])) {
          throw new Error(`${dest}/parts.bin differs from the source`);
        }
      },
    }]);
    result.figures.push(...measured);
    const seconds = median(measured[0]!.seconds);
    result.goals.push({
      name: `one file of ${SMALL_PARTS} parts of 4 KiB: fts fetch`,
      measured: `${seconds.toFixed(2)} s`,
      target: `< ${MAX_SMALL_PARTS_SECONDS} s`,
      met: seconds < MAX_SMALL_PARTS_SECONDS,
    });
    return result;
  } finally {
    await cluster.stop();
  }
}
