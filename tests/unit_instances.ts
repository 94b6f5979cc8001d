/**
 * In-process instances for unit tests: Servers on loopback ports, each with
 * its own part store under one temp directory, torn down after the test.
 */
import { join } from "node:path";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import { Server } from "../lib/server/server.ts";
import { PartStore } from "../lib/state/store.ts";
import { withTempDir } from "./unit_helpers.ts";
import { ensureConfig } from "../lib/state/config.ts";
import { fileMutationsContext, Mutations } from "../lib/server/mutations.ts";

/** One in-process instance: its store, its address on loopback, its server. */
export interface Instance {
  store: PartStore;
  address: string;
  server: Server;
}

/** Runs `fn` with `count` servers, each with its own store under one temp directory. */
export async function withInstances(
  count: number,
  fn: (instances: Instance[]) => Promise<void>,
): Promise<void> {
  await withTempDir("fts-unit-instances-", async (dir) => {
    // A config and cluster id: part.put is signed for the id cluster.info names.
    await ensureConfig(dir, { servers: count, replicas: 1 });
    const listeners: Deno.TcpListener[] = [];
    const handlers: Promise<void>[] = [];
    const instances: Instance[] = [];
    for (let i = 0; i < count; i++) {
      const store = new PartStore(join(dir, "instances", String(i)));
      await store.init();
      const server = new Server({
        id: String(i),
        store,
        manifest: openManifestStore(dir),
        mutations: () => Promise.resolve(new Mutations(fileMutationsContext(dir))),
        addressOf: (id) => `127.0.0.1:${id}`,
      });
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      listeners.push(listener);
      handlers.push(
        (async () => {
          for await (const conn of listener) handlers.push(server.accept(conn));
        })().catch(() => {}),
      );
      instances.push({
        store,
        server,
        address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
      });
    }
    try {
      await fn(instances);
    } finally {
      for (const listener of listeners) listener.close();
      for (const { server } of instances) server.closeAll();
      await Promise.all(handlers);
    }
  });
}

/** Damages a stored copy of a part in place (its 8th byte inverted). */
export async function flipByte(store: PartStore, digest: string): Promise<void> {
  const path = store.pathOf(digest);
  const bytes = await Deno.readFile(path);
  bytes[7] = bytes[7]! ^ 0xff;
  await Deno.writeFile(path, bytes);
}
