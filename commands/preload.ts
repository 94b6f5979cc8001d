import { onStopSignal } from "../lib/base/stop_signal.ts";
import {
  boolFlag,
  CLUSTER_FLAGS,
  clusterFlags,
  ETCD_FLAGS,
  etcdTarget,
  parseFlags,
  sizeFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { ensureConfig, resolveDataDir, validateConfig } from "../lib/state/config.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { normalizeFileName, validateNewFileName } from "../lib/state/manifest.ts";
import { basename } from "../lib/base/paths.ts";
import { preloadFiles } from "../lib/ops/preload.ts";
import { Progress, reportMode } from "../lib/ui/progress.ts";
import { formatBytes, formatDuration, plural } from "../lib/base/units.ts";
import { type EtcdTarget } from "../lib/etcd/etcd_keys.ts";
import { signingContext } from "../lib/client/signed_client.ts";
import { uploadFile } from "../lib/client/upload.ts";

export const USAGE =
  "fts preload FILE... [--servers 50] [--base-port 9001] [--replicas 5] [--host 127.0.0.1] [--part-size 8MiB] [--as NAME] [--replace] [--quiet] [--json] [--data DIR] [--etcd URLS [--cluster NAME] [--tls-ca FILE]]";

export const EXAMPLE = [
  "fts preload movie.mkv                        # 8 MiB parts, 5 copies each, into ./fts-data",
  "fts preload *.iso --servers 10 --replicas 3 --part-size 16MiB",
  "fts preload movie.mkv --etcd http://10.0.0.1:2379   # over the network, as the operator",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...CLUSTER_FLAGS,
    "part-size": { type: "string" },
    as: { type: "string" },
    replace: { type: "boolean" },
    quiet: { type: "boolean", short: "q" },
    json: { type: "boolean" },
    "tls-ca": { type: "string" },
    ...ETCD_FLAGS,
  });
  const files = flags.positionals;
  if (files.length === 0) throw new UsageError(`Missing FILE; usage: ${USAGE}`);
  const as = stringFlag(flags, "as");
  if (as !== undefined && files.length > 1) throw new UsageError("--as takes exactly one FILE");
  const requested = clusterFlags(flags);
  const partSizeFlag = sizeFlag(flags, "part-size");
  if (partSizeFlag !== undefined) requested.partSize = partSizeFlag;

  // Check every name and file before storing anything.
  const jobs = files.map((path) => {
    const name = normalizeFileName(as ?? basename(path));
    try {
      validateNewFileName(name);
    } catch (cause) {
      throw new UsageError(`Bad file name for ${path}: ${(cause as Error).message}`, { cause });
    }
    return { path, name };
  });
  for (const { path } of jobs) {
    try {
      const info = await Deno.stat(path);
      if (!info.isFile) throw new UsageError(`${path} is not a regular file`);
      // Readable too, before the data directory is made or a part stored.
      (await Deno.open(path, { read: true })).close();
    } catch (cause) {
      if (cause instanceof UsageError) throw cause;
      throw new UsageError(`Cannot read ${path}: ${(cause as Error).message}`, { cause });
    }
  }
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const etcd = etcdTarget(flags);
  if (etcd) {
    if (partSizeFlag !== undefined || Object.keys(requested).length > 0) {
      throw new UsageError(
        "With --etcd the cluster's shape and part size are its settings in etcd (fts cluster sets them)",
      );
    }
    const tlsCa = stringFlag(flags, "tls-ca");
    return await _preloadOverNetwork(jobs, dir, etcd, {
      replace: boolFlag(flags, "replace"),
      tlsCa,
      quiet: boolFlag(flags, "quiet"),
      json: boolFlag(flags, "json"),
    });
  }
  if (stringFlag(flags, "tls-ca") !== undefined) {
    throw new UsageError(
      "--tls-ca is for --etcd: without it preload stores into --data, not over TLS",
    );
  }
  const config = await ensureConfig(dir, requested);
  const partSize = partSizeFlag ?? config.partSize;
  // The recorded config was checked when it was made; a --part-size for this run is checked here.
  validateConfig({ ...config, partSize });
  const quiet = boolFlag(flags, "quiet");
  const json = boolFlag(flags, "json");
  // Every file is stored first, then all are published in one manifest change.
  const elapsed = new Map<number, number>();
  let progress: Progress | undefined;
  let started = performance.now();
  const controller = new AbortController();
  const stopListening = onStopSignal(() =>
    controller.abort(new DOMException("Interrupted", "AbortError"))
  );
  const entries = await (async () => {
    try {
      return await preloadFiles(
        dir,
        config,
        jobs.map(({ path, name }, index) => ({
          path,
          name,
          partSize,
          replace: boolFlag(flags, "replace"),
          onPart: ({ index: part, parts, bytes, size }) => {
            progress ??= new Progress(reportMode({ quiet, json }));
            progress.update({
              label: `preload ${name}`,
              bytesTotal: size,
              bytesDone: bytes,
              partsTotal: parts,
              partsDone: part + 1,
            });
          },
          onStored: () => {
            progress?.finish();
            progress = undefined;
            elapsed.set(index, performance.now() - started);
            started = performance.now();
          },
        })),
        controller.signal,
      );
    } catch (error) {
      if (!controller.signal.aborted) throw error;
      throw _interrupted(elapsed.size, jobs.length);
    } finally {
      progress?.finish();
      stopListening();
    }
  })();
  for (const [index, entry] of entries.entries()) {
    const { name } = jobs[index]!;
    const elapsedMs = elapsed.get(index) ?? 0;
    if (json) {
      _printJson({
        name,
        size: entry.size,
        parts: entry.parts.length,
        partSize: entry.partSize,
        replicas: config.replicas,
        elapsedMs,
      });
    } else if (!quiet) {
      console.log(
        `preloaded ${name}: ${formatBytes(entry.size)} in ${
          plural(entry.parts.length, "part")
        } of ${formatBytes(entry.partSize)}, ${plural(config.replicas, "replica")} each (${
          formatDuration(elapsedMs)
        })`,
      );
    }
  }
  return 0;
}

/**
 * Preloading a cluster in etcd: each file is uploaded to the live instances
 * as the operator (the key `fts cluster` made in its data directory), since
 * instances on other hosts share no directory with this one.
 */
async function _preloadOverNetwork(
  jobs: { path: string; name: string }[],
  dir: string,
  etcd: EtcdTarget,
  { replace, tlsCa, quiet, json }: {
    replace: boolean;
    tlsCa: string | undefined;
    quiet: boolean;
    json: boolean;
  },
): Promise<number> {
  const { servers, identity } = await signingContext({
    dataDir: dir,
    servers: [],
    identity: undefined,
    operator: true,
    etcd,
    tlsCa,
  });
  const controller = new AbortController();
  const stopListening = onStopSignal(() =>
    controller.abort(new DOMException("Interrupted", "AbortError"))
  );
  try {
    for (const [index, { path, name }] of jobs.entries()) {
      const result = await uploadFile({
        path,
        name,
        servers,
        identity,
        replace,
        signal: controller.signal,
      }).catch((error) => {
        throw controller.signal.aborted ? _interrupted(index, jobs.length, index) : error;
      });
      if (json) {
        _printJson(result);
      } else if (!quiet) {
        console.log(
          `preloaded ${name}: ${formatBytes(result.size)} in ${plural(result.parts, "part")}, ` +
            `${plural(result.replicas, "copy", "copies")} each, sent over the network (${
              formatDuration(result.elapsedMs)
            })`,
        );
      }
    }
  } finally {
    stopListening();
  }
  return 0;
}

/**
 * What an interrupted preload says: into --data nothing is published until
 * every file is stored; over the network each file is published in turn.
 */
function _interrupted(stored: number, files: number, published?: number): DOMException {
  return new DOMException(
    published === undefined || published === 0
      ? `interrupted with ${stored} of ${plural(files, "file")} stored, nothing published: ` +
        `the same command skips the parts already stored`
      : `interrupted with ${published} of ${plural(files, "file")} published: preload the ` +
        `others again (fts ls shows which are in; their stored parts are not sent again)`,
    "AbortError",
  );
}

/** One preloaded file's line of --json, the same over the network and into --data. */
function _printJson(file: {
  name: string;
  size: number;
  parts: number;
  partSize: number;
  replicas: number;
  elapsedMs: number;
}): void {
  const { name, size, parts, partSize, replicas, elapsedMs } = file;
  console.log(JSON.stringify({
    ok: true,
    name,
    size,
    parts,
    partSize,
    replicas,
    elapsedMs: Math.round(elapsedMs),
  }));
}
