/**
 * An idle `fts serve` must not load node: modules: each costs every instance
 * megabytes of resident memory, 50 times on a host. Hashing loads
 * node:crypto on first use (lib/hash/sha256.ts), by a dynamic import.
 */
import assert from "node:assert/strict";
import { MAIN } from "./harness.ts";

type _Dependency = { specifier: string; code?: { specifier?: string }; isDynamic?: boolean };
type _Graph = { modules: { specifier: string; dependencies?: _Dependency[] }[] };

/** The modules reached from `roots` by static imports, each with the chain that reached it. */
function staticClosure(graph: _Graph, roots: string[]): Map<string, string[]> {
  const edges = new Map(graph.modules.map((m) => [m.specifier, m.dependencies ?? []]));
  const reached = new Map<string, string[]>(roots.map((root) => [root, [root]]));
  const queue = [...roots];
  while (queue.length > 0) {
    const from = queue.shift()!;
    for (const dependency of edges.get(from) ?? []) {
      const to = dependency.code?.specifier;
      if (dependency.isDynamic || to === undefined || reached.has(to)) continue;
      reached.set(to, [...reached.get(from)!, to]);
      queue.push(to);
    }
  }
  return reached;
}

/** `deno info --json` of one module: its whole graph, dynamic imports included. */
async function moduleGraph(path: string): Promise<_Graph> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  return JSON.parse(new TextDecoder().decode(output.stdout)) as _Graph;
}

Deno.test("fts serve imports no node: module statically (main.ts and commands/serve.ts)", async () => {
  const main = new URL(`file://${MAIN}`).href;
  const serve = new URL("./commands/serve.ts", main).href;
  // main.ts loads a command by a computed specifier, so its graph stops there;
  // the two graphs together are what an instance started from main.ts loads.
  const graphs = [await moduleGraph(MAIN), await moduleGraph(new URL(serve).pathname)];
  const graph: _Graph = { modules: graphs.flatMap((g) => g.modules) };
  const reached = staticClosure(graph, [main, serve]);
  // The walk does reach the server, and the graph does hold node: modules (of other commands).
  assert.ok(reached.has(new URL("../lib/server/server.ts", serve).href));
  assert.ok(reached.has(new URL("../lib/state/store.ts", serve).href));
  assert.ok(graph.modules.some((m) => m.specifier.startsWith("node:")));
  const nodeModules = [...reached].filter(([specifier]) => specifier.startsWith("node:"));
  assert.deepEqual(
    nodeModules.map(([, chain]) => chain.join(" -> ")),
    [],
    "node: modules that fts serve would load at startup",
  );
});
