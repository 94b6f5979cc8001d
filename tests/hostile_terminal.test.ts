/**
 * Terminal escape injection: names and owners are chosen by uploaders (or by
 * a lying server), and a terminal obeys what it is sent. `fts ls` must show
 * every control and bidirectional character escaped, new names must not hold
 * them, and names are Unicode NFC, so two names that look the same are one.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadOrCreateIdentity, operatorIdentityPath } from "../lib/auth/identity.ts";
import { Peer } from "../lib/client/peer.ts";
import { signRequest } from "../lib/auth/signed_request.ts";
import { bindRequest } from "../lib/client/signed_client.ts";
import { jsonBody } from "../lib/wire/frame.ts";
import { startDirectCluster } from "./direct_cluster.ts";
import { assertSameFile, readManifestJson, runFts, tempDir, writeRandomFile } from "./harness.ts";
import { startLyingServer } from "./lying_server.ts";
import { Progress } from "../lib/ui/progress.ts";
import { eventPrinter } from "../lib/ui/repair_progress.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";

/** Any character a terminal acts on or that reorders text; newlines end lines and are fine. */
// deno-lint-ignore no-control-regex
const RAW_CONTROL = new RegExp(
  "[\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]",
);

/** Names that clear the screen, set the title, start a C1 sequence, or reverse text. */
const EVIL_NAMES = [
  "clear\u001b[2J\u001b[H.bin",
  "title\u001b]0;pwned\u0007.bin",
  "csi\u009b31m.bin",
  "report\u202egpj.exe",
];

/** Names a new file must not get, though older manifests may hold them. */
const REFUSED_NEW_NAMES = [
  "csi\u009b31m.bin",
  "nel\u0085.bin",
  "report\u202egpj.exe",
  "embed\u202ax.bin",
  "isolate\u2066x\u2069.bin",
  "mark\u200fx.bin",
  "arabic\u061cx.bin",
];

function _entry(name: string, owner: string) {
  return {
    name,
    size: 10,
    partSize: 4096,
    owner,
    created: "",
    parts: [{ digest: "a".repeat(64), size: 10, replicas: ["666"] }],
  };
}

Deno.test("terminal: fts ls against a lying server escapes ESC, C1 and bidi in names and owners", async () => {
  const work = await tempDir("fts-escape-");
  const owner = "ed25519:\u001b]0;owned\u0007\u009b2J\u202e";
  const liar = startLyingServer((request) => {
    if (request.op === "file.list") {
      return {
        header: { op: "files", generation: 1 },
        body: jsonBody(
          EVIL_NAMES.map((name) => ({ name, size: 10, parts: 1, owner, created: "" })),
        ),
      };
    }
    if (request.op === "file.get") {
      return {
        header: { op: "file", name: String(request.name), generation: 1 },
        body: jsonBody({
          entry: _entry("csi\u009b31m.bin", owner),
          instances: { "666": "127.0.0.1:1\u001b[2J" },
        }),
      };
    }
    return undefined;
  });
  try {
    const flags = ["--server", liar.address, "--data", join(work, "nodata")];
    const listed = await runFts(["ls", ...flags]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.doesNotMatch(listed.stdout, RAW_CONTROL, JSON.stringify(listed.stdout));
    // Every name is listed, its controls shown as escapes.
    assert.match(listed.stdout, /clear\\x1b\[2J\\x1b\[H\.bin/);
    assert.match(listed.stdout, /csi\\x9b31m\.bin/);
    assert.match(listed.stdout, /report\\u202egpj\.exe/);
    assert.match(listed.stdout, /ed25519:\\x1b\]0;/);
    const one = await runFts(["ls", "csi\u009b31m.bin", ...flags]);
    assert.equal(one.code, 0, one.stderr);
    assert.doesNotMatch(one.stdout + one.stderr, RAW_CONTROL, JSON.stringify(one.stdout));
    assert.match(one.stdout, /csi\\x9b31m\.bin: 10 B in 1 part /);
    // An error quoting a server-provided name is escaped too.
    const fetched = await runFts(["fetch", "csi\u009b31m.bin", work, ...flags, "--timeout", "1s"]);
    assert.notEqual(fetched.code, 0);
    assert.doesNotMatch(fetched.stdout + fetched.stderr, RAW_CONTROL, fetched.stderr);
  } finally {
    await liar.stop();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("terminal: upload, preload and mv refuse C1 and bidi controls in new names (exit 2)", async () => {
  const cluster = await startDirectCluster({ servers: 2, replicas: 1, files: { "ok.bin": 5000 } });
  try {
    const source = join(cluster.work, "payload.bin");
    await writeRandomFile(source, 3000, 5);
    const generation = (await readManifestJson(cluster.dir)).generation;
    for (const name of REFUSED_NEW_NAMES) {
      const label = JSON.stringify(name);
      const uploaded = await cluster.fts(["upload", source, "--as", name, "--operator"]);
      assert.equal(uploaded.code, 2, `upload --as ${label}: ${uploaded.stderr}`);
      assert.match(uploaded.stderr, /C1 control or bidirectional/, label);
      assert.doesNotMatch(uploaded.stderr, RAW_CONTROL, label);
      const preloaded = await cluster.fts(["preload", source, "--as", name]);
      assert.equal(preloaded.code, 2, `preload --as ${label}: ${preloaded.stderr}`);
      const moved = await cluster.fts(["mv", "ok.bin", name, "--operator"]);
      assert.equal(moved.code, 2, `mv to ${label}: ${moved.stderr}`);
    }
    // The instances refuse them too, from a client that skips the checks.
    const identity = await loadOrCreateIdentity(operatorIdentityPath(cluster.dir));
    const peer = await Peer.connect(`127.0.0.1:${cluster.ports[0]}`);
    try {
      for (const to of [...REFUSED_NEW_NAMES, "e\u0301.bin"]) {
        const rename = await signRequest(
          identity,
          await bindRequest(peer, { op: "file.rename", name: "ok.bin", to }),
        );
        await assert.rejects(peer.request(rename), /BAD_NAME|C1|NFC/, JSON.stringify(to));
      }
    } finally {
      peer.close();
    }
    assert.equal((await readManifestJson(cluster.dir)).generation, generation);
  } finally {
    await cluster.stop();
  }
});

Deno.test("terminal: a name uploaded decomposed (e + U+0301) is fetched by its precomposed form", async () => {
  const cluster = await startDirectCluster({ servers: 2, replicas: 1, files: { "ok.bin": 5000 } });
  try {
    const source = join(cluster.work, "payload.bin");
    await writeRandomFile(source, 30_000, 6);
    const decomposed = "cafe\u0301.bin";
    const precomposed = "caf\u00e9.bin";
    const uploaded = await cluster.fts(["upload", source, "--as", decomposed, "--operator"]);
    assert.equal(uploaded.code, 0, uploaded.stderr);
    const names = Object.keys((await readManifestJson(cluster.dir)).files);
    assert.ok(names.includes(precomposed), `stored as ${JSON.stringify(names)}`);
    assert.ok(!names.includes(decomposed));
    // The same-looking name is the same file: a second upload is refused without --replace.
    const again = await cluster.fts(["upload", source, "--as", precomposed, "--operator"]);
    assert.notEqual(again.code, 0, again.stdout);
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetched = await cluster.fts(["fetch", precomposed, dest]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, precomposed), source);
    await Deno.mkdir(join(cluster.work, "dest2"));
    const byDecomposed = await cluster.fts(["fetch", decomposed, join(cluster.work, "dest2")]);
    assert.equal(byDecomposed.code, 0, byDecomposed.stderr);
    await assertSameFile(join(cluster.work, "dest2", precomposed), source);
  } finally {
    await cluster.stop();
  }
});

Deno.test("terminal: an entry stored decomposed before names were NFC is listed, renamed and removed by its NFC name", async () => {
  const cluster = await startDirectCluster({
    servers: 2,
    replicas: 1,
    files: { "old.bin": 5000, "other.bin": 3000 },
  });
  try {
    // As an fts from before names were normalised stored it.
    const store = openManifestStore(cluster.dir);
    await store.change(["old.bin", "cafe\u0301.bin"], (current) => {
      const { entry } = current.get("old.bin")!;
      return { puts: [{ ...entry, name: "cafe\u0301.bin" }], deletes: ["old.bin"], result: 0 };
    });
    const listed = await cluster.fts(["ls", "caf\u00e9.bin"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^cafe\u0301\.bin: 4\.9 KiB in 1 part /);
    const moved = await cluster.fts(["mv", "caf\u00e9.bin", "tea.bin", "--operator"]);
    assert.equal(moved.code, 0, moved.stderr);
    await store.change(["other.bin", "the\u0301.bin"], (current) => {
      const { entry } = current.get("other.bin")!;
      return { puts: [{ ...entry, name: "the\u0301.bin" }], deletes: ["other.bin"], result: 0 };
    });
    const removed = await cluster.fts(["rm", "th\u00e9.bin", "--operator"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(Object.keys((await readManifestJson(cluster.dir)).files), ["tea.bin"]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("terminal: progress events and repair lines escape the names they quote", () => {
  const out: string[] = [];
  const progress = new Progress("plain", { write: (text) => out.push(text), columns: () => 80 });
  progress.event("failover: part 3 from 127.0.0.1:9001\u001b]0;owned\u0007 failed");
  const printed: string[] = [];
  const original = console.error;
  console.error = (line: string) => printed.push(line);
  try {
    eventPrinter(false)({
      type: "lost",
      digest: "a".repeat(64),
      refs: [{ file: "old\u009b2J\u202e.bin", index: 0 }],
      listed: [],
    });
  } finally {
    console.error = original;
  }
  for (const text of [...out, ...printed]) {
    assert.doesNotMatch(text.trimEnd(), RAW_CONTROL, JSON.stringify(text));
  }
  assert.match(out.join(""), /9001\\x1b\]0;owned\\x07 failed/);
  assert.match(printed.join(""), /old\\x9b2J\\u202e\.bin/);
});

Deno.test("terminal: an entry stored decomposed before names were NFC is still found by its NFC name", async () => {
  const work = await tempDir("fts-nfd-");
  const decomposed = "cafe\u0301.bin";
  const liar = startLyingServer((request) => {
    if (request.op === "file.list") {
      const row = { name: decomposed, size: 10, parts: 1, owner: "operator", created: "" };
      return { header: { op: "files", generation: 1 }, body: jsonBody([row]) };
    }
    if (request.op === "file.get" && request.name === decomposed) {
      return {
        header: { op: "file", name: decomposed, generation: 1 },
        body: jsonBody({
          entry: _entry(decomposed, "operator"),
          instances: { "666": "127.0.0.1:1" },
        }),
      };
    }
    return undefined;
  });
  try {
    const flags = ["--server", liar.address, "--data", join(work, "nodata")];
    const listed = await runFts(["ls", "caf\u00e9.bin", ...flags]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^cafe\u0301\.bin: 10 B in 1 part /);
  } finally {
    await liar.stop();
    await Deno.remove(work, { recursive: true });
  }
});
