/**
 * A cluster of `fts serve` processes started one by one (no supervisor), for
 * fault tests that need their own serve flags or a fault proxy in front of
 * every instance.
 *
 * With proxies, each instance listens on a private port and is started with
 * `--public-port` set to the cluster's configured port, where a FaultProxy
 * listens. The manifest's replica ids and the addresses instances hand out are
 * those public ports, so every client connection, to the first server as well
 * as to each replica, goes through a proxy, and no client code knows.
 */
import { join } from "node:path";
import { FaultProxy } from "./fault_proxy.ts";
import {
  freePortRange,
  FtsProcess,
  readManifestJson,
  runFts,
  type RunResult,
  tempDir,
  writeRandomFile,
} from "./harness.ts";

export interface DirectCluster {
  work: string;
  dir: string;
  /** Public ports: instance ids, and where clients connect. */
  ports: number[];
  /** Where each instance really listens (equal to `ports` without proxies). */
  listenPorts: number[];
  /** One per instance when started with proxies, else empty. */
  proxies: FaultProxy[];
  instances: (FtsProcess | undefined)[];
  source(name: string): string;
  /** Runs fts with `--data DIR` added. */
  fts(args: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<
    RunResult
  >;
  /** Public ports holding each part of a file, from the manifest. */
  holders(name: string): Promise<number[][]>;
  startInstance(index: number): Promise<FtsProcess>;
  /** SIGKILLs one instance and waits for it to be gone. */
  killInstance(index: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startDirectCluster(options: {
  servers: number;
  replicas: number;
  partSize?: string;
  files: Record<string, number>;
  serveArgs?: string[];
  proxies?: boolean;
}): Promise<DirectCluster> {
  const work = await tempDir("fts-fault-");
  const dir = join(work, "data");
  const src = join(work, "src");
  await Deno.mkdir(src);
  const base = freePortRange(options.servers);
  const ports = Array.from({ length: options.servers }, (_, i) => base + i);
  const listenBase = options.proxies ? freePortRange(options.servers) : base;
  const listenPorts = ports.map((_, i) => listenBase + i);
  let seed = 11;
  const paths: string[] = [];
  for (const [name, size] of Object.entries(options.files)) {
    await writeRandomFile(join(src, name), size, seed++);
    paths.push(join(src, name));
  }
  const preload = await runFts([
    "preload",
    ...paths,
    "--data",
    dir,
    "--servers",
    String(options.servers),
    "--base-port",
    String(base),
    "--replicas",
    String(options.replicas),
    "--part-size",
    options.partSize ?? "256KiB",
  ]);
  if (preload.code !== 0) throw new Error(`preload failed: ${preload.stderr}`);

  const instances: (FtsProcess | undefined)[] = ports.map(() => undefined);
  const proxies: FaultProxy[] = [];
  const cluster: DirectCluster = {
    work,
    dir,
    ports,
    listenPorts,
    proxies,
    instances,
    source: (name) => join(src, name),
    fts: (args, opts) => runFts([...args, "--data", dir], opts),
    async holders(name) {
      const entry = (await readManifestJson(dir)).files[name];
      if (!entry) throw new Error(`No ${name} in the manifest`);
      return entry.parts.map((part) => part.replicas.map(Number));
    },
    async startInstance(index) {
      const args = ["serve", "--port", String(listenPorts[index]), "--data", dir];
      if (options.proxies) args.push("--public-port", String(ports[index]));
      const instance = new FtsProcess([...args, ...(options.serveArgs ?? [])]);
      instances[index] = instance;
      await instance.waitFor(/fts serve: ready/, 60_000);
      return instance;
    },
    async killInstance(index) {
      const instance = instances[index];
      if (!instance) return;
      instance.kill("SIGKILL");
      await instance.status;
      instances[index] = undefined;
    },
    async stop() {
      for (const proxy of proxies) await proxy.close();
      for (const instance of instances) instance?.kill("SIGTERM");
      await Promise.all(instances.map((instance) => instance?.status));
      await Deno.remove(work, { recursive: true }).catch(() => {});
    },
  };
  try {
    await Promise.all(ports.map((_, i) => cluster.startInstance(i)));
    if (options.proxies) {
      for (let i = 0; i < ports.length; i++) {
        proxies.push(await FaultProxy.start({ port: listenPorts[i]! }, { port: ports[i]! }));
      }
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
