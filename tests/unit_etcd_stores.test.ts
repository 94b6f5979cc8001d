/**
 * The etcd-backed stores against a real etcd on loopback: the manifest store
 * (compare-and-swap changes, chunked part lists past etcd's request limit,
 * pages at one revision, watch), the nonce store, the locker, the healer's
 * election, the settings, and the errors a wrong URL, an unreachable etcd or another cluster give.
 */
import assert from "node:assert/strict";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { EtcdCluster } from "../lib/etcd/etcd_cluster.ts";
import { EtcdClient } from "../lib/etcd/etcd_client.ts";
import { EtcdUnavailableError } from "../lib/etcd/etcd_errors.ts";
import { contentIdOf, type FileEntry } from "../lib/state/manifest.ts";
import { allEntries } from "../lib/state/manifest_store.ts";
import { referencedAmong } from "../lib/state/part_gc.ts";
import { runFts } from "./harness.ts";
import { dirname } from "node:path";
import { PartStore } from "../lib/state/store.ts";
import { freeAnnouncedCopies } from "../lib/ops/etcd_instance.ts";
import {
  announceFreed,
  DIGESTS_PER_KEY,
  followFreed,
  type Freed,
  parseFreed,
} from "../lib/etcd/etcd_freed_parts.ts";
import { Healer } from "../lib/ops/heal.ts";
import { leadHealing } from "../lib/ops/etcd_heal.ts";
import { emptyRepairReport } from "../lib/ops/repair_report.ts";

function _entry(name: string, parts: number, partSize = 8 * 1024 * 1024): FileEntry {
  const list = Array.from({ length: parts }, (_, i) => ({
    digest: (i + 1).toString(16).padStart(64, "0"),
    size: partSize,
    replicas: ["10.0.0.1:9001", "10.0.0.2:9001", "10.0.0.3:9001"],
  }));
  const size = parts * partSize;
  return {
    name,
    size,
    partSize,
    contentId: contentIdOf(size, list),
    owner: "operator",
    created: new Date(0).toISOString(),
    parts: list,
  };
}

let _etcd: Promise<EtcdProcess> | undefined;
let _users = 0;
/** One etcd for this file's tests; each test uses a cluster name of its own. */
async function _withEtcd(fn: (endpoints: string[]) => Promise<void>): Promise<void> {
  _users++;
  const etcd = await (_etcd ??= EtcdProcess.start({ addresses: ["127.0.0.1"] }));
  try {
    await fn(etcd.endpoints.split(","));
  } finally {
    if (--_users === 0) {
      _etcd = undefined;
      await etcd.stop();
    }
  }
}

const ignore = missingTool("etcd");

Deno.test({
  name: "EtcdManifestStore: a 1 TiB file in 8 MiB parts (131,072 parts) publishes in chunks",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "big");
      try {
        const big = _entry("big.img", 131_072);
        const outcome = await cluster.manifest.change(["big.img"], () => ({
          puts: [big],
          result: "ok",
        }));
        assert.ok(outcome.changed);
        const read = await cluster.manifest.get("big.img");
        assert.equal(read?.entry.parts.length, 131_072);
        assert.equal(read?.entry.contentId, big.contentId);
        assert.equal(read?.modRevision, outcome.revision);
        const page = await cluster.manifest.summaries();
        assert.deepEqual(page.summaries.map((s) => [s.name, s.parts]), [["big.img", 131_072]]);
        // Deleting the entry deletes its chunks too.
        await cluster.manifest.change(["big.img"], () => ({ deletes: ["big.img"], result: 0 }));
        const left = await cluster.etcd.range(`${cluster.keys.root}chunks/`, {
          prefix: true,
          countOnly: true,
        });
        assert.equal(left.count, 0);
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name:
    "EtcdManifestStore.getMany(): one transaction, entries in the order asked (a chunked one too), undefined where absent",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "many");
      try {
        const store = cluster.manifest;
        const entries = [_entry("a", 1, 4096), _entry("b", 40, 4096), _entry("c", 2, 4096)];
        await store.change(entries.map((e) => e.name), () => ({ puts: entries, result: 0 }));
        const found = await store.getMany(["c", "nope", "b", "a"]);
        assert.deepEqual(found.map((f) => f?.entry.name), ["c", undefined, "b", "a"]);
        assert.equal(found[2]?.entry.parts.length, 40);
        assert.equal(found[2]?.entry.contentId, entries[1]!.contentId);
        for (const f of found) if (f) assert.deepEqual(f, await store.get(f.entry.name));
        assert.deepEqual(await store.getMany([]), []);
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name: "EtcdManifestStore: change() compares revisions: concurrent renames never lose an entry",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "race");
      try {
        const store = cluster.manifest;
        await store.change(["a"], () => ({ puts: [_entry("a", 1, 4096)], result: 0 }));
        // Ten writers rename "a" to their own name at once: exactly one wins.
        const outcomes = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            store.change(["a", `b${i}`], (current) => {
              const found = current.get("a");
              if (!found) return { result: false };
              return {
                deletes: ["a"],
                puts: [{ ...found.entry, name: `b${i}` }],
                result: true,
              };
            })),
        );
        assert.equal(outcomes.filter((o) => o.result).length, 1);
        const names = [];
        for await (const { entry } of allEntries(store, 3)) names.push(entry.name);
        assert.equal(names.length, 1);
        assert.match(names[0]!, /^b\d$/);
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name: "EtcdManifestStore: pages of a walk come from one revision while writers go on",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "pages");
      try {
        const store = cluster.manifest;
        const names = Array.from({ length: 25 }, (_, i) => `f${String(i).padStart(2, "0")}`);
        for (const name of names) {
          await store.change([name], () => ({ puts: [_entry(name, 1, 4096)], result: 0 }));
        }
        const seen: string[] = [];
        let added = false;
        for await (const { entry, revision } of allEntries(store, 10)) {
          seen.push(entry.name);
          assert.ok(revision > 0);
          if (!added) {
            added = true;
            await store.change(["zz"], () => ({ puts: [_entry("zz", 1, 4096)], result: 0 }));
          }
        }
        // The walk saw the manifest as it was when it began.
        assert.deepEqual(seen, names);
        const watched = store.watch(await store.revision() - 1);
        const first = await watched[Symbol.asyncIterator]().next();
        assert.deepEqual(first.value, {
          type: "change",
          revision: await store.revision(),
          puts: ["zz"],
          deletes: [],
        });
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name: "EtcdNonceStore and EtcdLocker: a nonce is claimed once; a lock has one holder",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "locks");
      try {
        const nonces = cluster.nonces();
        const expires = Date.now() + 60_000;
        assert.equal(await nonces.claim("ed25519:k", "n1", expires), true);
        assert.equal(await cluster.nonces().claim("ed25519:k", "n1", expires), false);
        assert.equal(await nonces.claim("ed25519:other", "n1", expires), true);

        const a = cluster.locker("a");
        const b = cluster.locker("b");
        let inside = 0;
        let most = 0;
        await Promise.all(
          Array.from({ length: 4 }, (_, i) =>
            (i % 2 ? a : b).withLock("parts", async () => {
              most = Math.max(most, ++inside);
              await new Promise((resolve) => setTimeout(resolve, 30));
              inside--;
            })),
        );
        assert.equal(most, 1);
        const release = await a.acquire("repair");
        assert.equal(await b.tryAcquire("repair"), undefined);
        await release();
        const again = await b.tryAcquire("repair");
        assert.ok(again);
        await again();
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name:
    "EtcdCluster: settings recorded once; contradicting flags, other clusters, bad etcd refused",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "settings");
      try {
        const defaults = { replicas: 5, partSize: 8 * 1024 * 1024 };
        const made = await cluster.ensureSettings({ replicas: 3 }, defaults);
        assert.equal(made.replicas, 3);
        assert.equal((await cluster.ensureSettings({}, defaults)).clusterId, made.clusterId);
        await assert.rejects(
          cluster.ensureSettings({ replicas: 2 }, defaults),
          /--replicas 2 contradicts cluster "settings" in etcd \(--replicas 3\)/,
        );
        await assert.rejects(
          cluster.ensureSettings({ partSize: 16 * 1024 * 1024 }, defaults),
          /--part-size 16\.0 MiB contradicts cluster "settings" in etcd \(--part-size 8\.0 MiB\)/,
        );
        const other = new EtcdCluster(endpoints, "nobody");
        await assert.rejects(other.requireSettings(), /No cluster named "nobody".*"settings"/);
        other.close();
      } finally {
        cluster.close();
      }
      const dead = new EtcdClient(["http://127.0.0.1:1", "http://127.0.0.1:2"]);
      await assert.rejects(dead.range("x"), (error: Error) => {
        assert.ok(error instanceof EtcdUnavailableError);
        assert.match(error.message, /none of http:\/\/127\.0\.0\.1:1, http:\/\/127\.0\.0\.1:2/);
        return true;
      });
      // An endpoint that is no etcd (a peer port, a proxy's error page): the next one is tried.
      const notEtcd = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => new Response("404 page not found\n", { status: 404 }),
      );
      try {
        const wrongFirst = `http://127.0.0.1:${notEtcd.addr.port},${endpoints[0]}`;
        const listed = await runFts(["ls", "--etcd", wrongFirst, "--cluster", "settings"]);
        assert.equal(listed.code, 0, listed.stderr);
        const onlyWrong = await runFts(["ls", "--etcd", `http://127.0.0.1:${notEtcd.addr.port}`]);
        assert.equal(onlyWrong.code, 1, onlyWrong.stderr);
        assert.match(onlyWrong.stderr, /etcd is unavailable: .*something other than JSON/);
      } finally {
        await notEtcd.shutdown();
      }
      // A member whose gateway cannot reach it (etcd stopping, a restart): gRPC's UNAVAILABLE,
      // answered in JSON. The next endpoint is tried; with none, "etcd is unavailable".
      const stopping = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () =>
          Response.json({
            error: "connection error",
            code: 14,
            message: 'connection error: desc = "transport: Error while dialing dial tcp ' +
              '127.0.0.1:2379: connect: connection refused"',
          }, { status: 503 }),
      );
      try {
        const stoppingFirst = `http://127.0.0.1:${stopping.addr.port},${endpoints[0]}`;
        const listed = await runFts(["ls", "--etcd", stoppingFirst, "--cluster", "settings"]);
        assert.equal(listed.code, 0, listed.stderr);
        const onlyStopping = await runFts([
          "ls",
          "--etcd",
          `http://127.0.0.1:${stopping.addr.port}`,
        ]);
        assert.equal(onlyStopping.code, 1, onlyStopping.stderr);
        assert.match(onlyStopping.stderr, /etcd is unavailable: none of /);
      } finally {
        await stopping.shutdown();
      }
      // The command line: one clear line and exit 1 or 2, for each kind of bad input.
      const badUrl = await runFts(["ls", "--etcd", "not a url"]);
      assert.equal(badUrl.code, 2);
      assert.match(badUrl.stderr, /is not a URL/);
      const noUrl = await runFts(["ls", "--etcd", ""]);
      assert.equal(noUrl.code, 2);
      assert.match(noUrl.stderr, /--etcd needs URLS/);
      const unreachable = await runFts(["ls", "--etcd", "http://127.0.0.1:1"]);
      assert.equal(unreachable.code, 1);
      assert.match(unreachable.stderr, /etcd is unavailable: none of http:\/\/127\.0\.0\.1:1/);
      const otherCluster = await runFts(["fetch", "x", "--etcd", endpoints[0]!, "--cluster", "zz"]);
      assert.equal(otherCluster.code, 2);
      assert.match(otherCluster.stderr, /No cluster named "zz"/);
      // Not this machine's, or a wildcard (it listens here but names no machine to dial).
      for (
        const [host, said] of [
          ["192.0.2.7", /--host 192\.0\.2\.7 is not an address of this machine/],
          ["0.0.0.0", /--host 0\.0\.0\.0 is a wildcard address/],
          ["::1", /--host ::1 is an IPv6 address, which fts cannot take yet/],
        ] as const
      ) {
        const flags = ["--etcd", endpoints[0]!, "--cluster", "settings", "--host", host];
        const refused = await runFts(["serve", ...flags, "--port", "0"]);
        assert.equal(refused.code, 2, refused.stderr);
        assert.match(refused.stderr, said);
      }
    });
  },
});

Deno.test({
  name: "EtcdManifestStore: replacing a chunked entry deletes its old chunks; 65 names refused",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "replace");
      try {
        const store = cluster.manifest;
        const chunks = async () =>
          (await cluster.etcd.range(`${cluster.keys.root}chunks/`, {
            prefix: true,
            countOnly: true,
          })).count;
        // 40 parts: past MAX_INLINE_PARTS, so one chunk.
        await store.change(["v"], () => ({ puts: [_entry("v", 40, 4096)], result: 0 }));
        assert.equal(await chunks(), 1);
        const other = { ..._entry("v", 40, 8192) };
        await store.change(["v"], () => ({ puts: [other], result: 0 }));
        assert.equal(await chunks(), 1);
        assert.equal((await store.get("v"))?.entry.contentId, other.contentId);
        const names = Array.from({ length: 65 }, (_, i) => `n${i}`);
        await assert.rejects(
          store.change(names, () => ({ result: 0 })),
          /names at most 64 entries, not 65/,
        );
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name:
    "EtcdManifestStore.writtenSince(): only entries written after the revision, chunked ones too",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "since");
      try {
        const store = cluster.manifest;
        const names = async (revision: number) => {
          const got = [];
          for await (const entry of store.writtenSince(revision)) {
            got.push(`${entry.name}:${entry.parts.length}`);
          }
          return got;
        };
        await store.change(["old"], () => ({ puts: [_entry("old", 3, 4096)], result: 0 }));
        const revision = await store.revision();
        assert.deepEqual(await names(revision), []);
        // A chunked entry (40 parts) written since comes whole.
        await store.change(["new"], () => ({ puts: [_entry("new", 40, 4096)], result: 0 }));
        assert.deepEqual(await names(revision), ["new:40"]);
        assert.deepEqual((await names(0)).sort(), ["new:40", "old:3"]);
        // Deleted since: gone from it.
        await store.change(["new"], () => ({ deletes: ["new"], result: 0 }));
        assert.deepEqual(await names(revision), []);
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name:
    "freeAnnouncedCopies(): announced digests and copies go, unless an entry written since uses or lists them",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "announce");
      const dir = await Deno.makeTempDir({ prefix: "fts-unit-freed-" });
      const stop = new AbortController();
      try {
        const parts = new PartStore(dir);
        await parts.init();
        const id = "10.0.0.5:9001";
        const digest = (n: number) => n.toString(16).padStart(64, "0");
        for (const n of [1, 2, 3, 4]) {
          const path = parts.pathOf(digest(n));
          await Deno.mkdir(dirname(path), { recursive: true });
          await Deno.writeFile(path, new Uint8Array(4096));
        }
        const revision = await cluster.manifest.revision();
        await announceFreed(cluster.etcd, cluster.keys, {
          revision,
          digests: [digest(3), digest(4)],
          copies: [{ id, digest: digest(1) }, { id, digest: digest(2) }],
          unused: [],
        });
        // Since then: an entry lists this instance's copy of part 2, and one uses part 4.
        const listing = _entry("listing", 2, 4096);
        listing.parts[1]!.replicas = [id];
        const using = _entry("using", 1, 4096);
        using.parts[0]!.digest = digest(4);
        using.contentId = contentIdOf(using.size, using.parts);
        await cluster.manifest.change(["listing", "using"], () => ({
          puts: [listing, using],
          result: 0,
        }));
        const following = freeAnnouncedCopies(cluster, {
          holder: "test",
          stores: () => Promise.resolve([parts]),
          storeOf: (other) => other === id ? parts : undefined,
        }, stop.signal);
        const held = async () => {
          const out = [];
          for (const n of [1, 2, 3, 4]) {
            if (await parts.sizeOf(digest(n)) !== undefined) out.push(n);
          }
          return out;
        };
        for (let i = 0; i < 100 && (await held()).length > 2; i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        // 1 and 3 went; 2 is listed and 4 used by entries written since.
        assert.deepEqual(await held(), [2, 4]);
        stop.abort();
        await following;
      } finally {
        stop.abort();
        cluster.close();
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test({
  name:
    "freed parts: announcements standing and new ones reach a follower, merged; bad ones are ignored",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "freed");
      const stop = new AbortController();
      try {
        const digest = (n: number) => n.toString(16).padStart(64, "0");
        // Longer than one key holds: split, and merged again by the follower.
        const many = Array.from({ length: DIGESTS_PER_KEY + 5 }, (_, i) => digest(i + 1));
        await announceFreed(cluster.etcd, cluster.keys, {
          revision: 7,
          digests: many,
          copies: [],
          unused: [],
        });
        await cluster.etcd.put(cluster.keys.freedKey("junk"), "{not json");
        const heard: Freed[] = [];
        const last = digest(99999);
        // A failed free is tried again, merged with what comes next: this one fails until then.
        const following = followFreed(cluster.etcd, cluster.keys, (freed) => {
          heard.push(freed);
          return freed.digests.includes(last)
            ? Promise.resolve()
            : Promise.reject(new Error("lock out of reach"));
        }, stop.signal);
        const waitFor = async (done: () => boolean) => {
          for (let i = 0; i < 200 && !done(); i++) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        };
        await waitFor(() => heard.length > 0);
        assert.equal(heard[0]!.revision, 7);
        assert.deepEqual(new Set(heard[0]!.digests), new Set(many));
        await announceFreed(cluster.etcd, cluster.keys, {
          revision: 9,
          digests: [last],
          copies: [{ id: "10.0.0.1:9001", digest: last }],
          unused: [{ id: "10.0.0.1:9001", digest: digest(5) }],
          untouchedSince: 1000,
        });
        await waitFor(() => heard.at(-1)!.digests.includes(last));
        // The earlier revision, every digest.
        const merged = heard.at(-1)!;
        assert.equal(merged.revision, 7);
        assert.deepEqual(new Set(merged.digests), new Set([...many, last]));
        assert.deepEqual(merged.copies, [{ id: "10.0.0.1:9001", digest: last }]);
        assert.deepEqual(merged.unused, [{ id: "10.0.0.1:9001", digest: digest(5) }]);
        assert.equal(merged.untouchedSince, 1000);
        // Freed: not heard again.
        const calls = heard.length;
        await new Promise((resolve) => setTimeout(resolve, 600));
        assert.equal(heard.length, calls);
        stop.abort();
        await following;
        assert.equal(parseFreed(JSON.stringify({ revision: 1, digests: ["x"] })), undefined);
        assert.equal(parseFreed(JSON.stringify({ revision: -1, digests: [] })), undefined);
        assert.deepEqual(parseFreed(JSON.stringify({ revision: 3, digests: [digest(1)] })), {
          revision: 3,
          digests: [digest(1)],
          copies: [],
          unused: [],
        });
        const copy = { id: "10.0.0.2:9001", digest: digest(2) };
        assert.deepEqual(parseFreed(JSON.stringify({ revision: 4, copies: [copy] })), {
          revision: 4,
          digests: [],
          copies: [copy],
          unused: [],
        });
        // Unused copies come with the time they must be untouched since.
        assert.equal(parseFreed(JSON.stringify({ revision: 4, unused: [copy] })), undefined);
        assert.deepEqual(
          parseFreed(JSON.stringify({ revision: 4, unused: [copy], untouchedSince: 5 })),
          { revision: 4, digests: [], copies: [], unused: [copy], untouchedSince: 5 },
        );
        for (const copies of [[{ id: 7, digest: digest(2) }], [{ id: "a", digest: "b" }], [null]]) {
          assert.equal(parseFreed(JSON.stringify({ revision: 4, copies })), undefined);
        }
      } finally {
        stop.abort();
        cluster.close();
      }
    });
  },
});

Deno.test({
  name:
    "EtcdManifestStore.usedDigests(): inline and chunked parts count, a digest in a name does not",
  ignore,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const cluster = new EtcdCluster(endpoints, "used");
      try {
        const store = cluster.manifest;
        const digest = (n: number) => n.toString(16).padStart(64, "0");
        // "small" uses parts 1..3 inline; "big" 1..40 in chunks; a third is named after part 50.
        const named = { ..._entry(`${digest(50)}.bin`, 1, 4096), name: `${digest(50)}.bin` };
        const entries = [_entry("small", 3, 4096), _entry("big", 40, 4096), named];
        await store.change(entries.map((e) => e.name), () => ({ puts: entries, result: 0 }));
        const few = new Set([digest(2), digest(30), digest(50), digest(60)]);
        assert.deepEqual([...await referencedAmong(store, few)].sort(), [digest(2), digest(30)]);
        const many = new Set([...few, ...Array.from({ length: 30 }, (_, i) => digest(100 + i))]);
        assert.deepEqual([...await referencedAmong(store, many)].sort(), [digest(2), digest(30)]);
        // A page of it: the used digests, the last name, one revision.
        const page = await store.usedDigests(few);
        assert.equal(page.more, false);
        assert.equal(page.last, "small");
        assert.equal(page.revision, await store.revision());
      } finally {
        cluster.close();
      }
    });
  },
});

Deno.test({
  name: "leadHealing(): one host's healer acts on who is down; when it stops another takes over",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withEtcd(async (endpoints) => {
      const clusters = [
        new EtcdCluster(endpoints, "election"),
        new EtcdCluster(endpoints, "election"),
      ];
      const runs: string[][] = [[], []];
      // As each host's supervisor makes them in etcd: following until elected.
      const healers = runs.map((reasons) =>
        new Healer(async (options) => {
          reasons.push(options.goneIds ? [...options.goneIds].join(",") : "");
          return await Promise.resolve(emptyRepairReport(false));
        }, { healAfterMs: 20, leading: false })
      );
      const until = async (what: string, done: () => boolean) => {
        const deadline = Date.now() + 15_000;
        while (!done()) {
          assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      };
      const stops = [leadHealing(clusters[0]!, healers[0]!, "one")];
      try {
        await until("the first is elected", () => healers[0]!.status().leading === true);
        stops.push(leadHealing(clusters[1]!, healers[1]!, "two"));
        await until("the second hears who leads", () => healers[1]!.status().leader === "one");
        assert.equal(healers[1]!.status().leading, false);
        // Both hear the same instance go down: only the elected one runs when it is due.
        for (const healer of healers) healer.instanceDown("10.0.0.9:9001");
        await until("the leader ran", () => runs[0]!.length === 1);
        healers.forEach((healer) => healer.instanceJoined("10.0.0.8:9001"));
        await until("the leader ran again", () => runs[0]!.length === 2);
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.deepEqual(runs[1], []);
        assert.deepEqual(runs[0], ["10.0.0.9:9001", "10.0.0.9:9001"]);
        assert.equal(
          healers[1]!.status().down[0]?.copies,
          "leader",
          JSON.stringify(healers[1]!.status()),
        );
        // The leader stops: the other takes over and runs at once, with the instance still due.
        await stops.shift()!();
        await until("the second took over", () => runs[1]!.length === 1);
        assert.equal(healers[1]!.status().leading, true);
        assert.deepEqual(runs[1], ["10.0.0.9:9001"]);
        assert.equal(runs[0]!.length, 2);
        // The instance back after a run made its copies elsewhere: a run to drop the surplus.
        healers.forEach((healer) => healer.instanceUp("10.0.0.9:9001"));
        await until("the new leader ran for the instance back", () => runs[1]!.length === 2);
        // The first stands again and follows; the second stops: with nothing due, the first
        // takes over without a run (a restarted host costs its instances' return, no more).
        stops.push(leadHealing(clusters[0]!, healers[0]!, "one"));
        await until("the first hears who leads", () => healers[0]!.status().leader === "two");
        await stops.shift()!();
        await until("the first leads again", () => healers[0]!.status().leading === true);
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.deepEqual(runs.map((r) => r.length), [2, 2]);
      } finally {
        for (const stop of stops) await stop();
        for (const healer of healers) await healer.stop();
        for (const cluster of clusters) cluster.close();
      }
    });
  },
});
