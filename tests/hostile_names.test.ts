/**
 * Hostile names: traversal, absolute paths, NUL and control characters, and
 * names too long, from the command line, from a signed request, and from a
 * lying server. None may touch a file outside the destination or the data
 * directory; each gets a clear error.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadOrCreateIdentity, operatorIdentityPath } from "../lib/auth/identity.ts";
import { Peer } from "../lib/client/peer.ts";
import { jsonBody } from "../lib/wire/frame.ts";
import { signRequest } from "../lib/auth/signed_request.ts";
import { bindRequest } from "../lib/client/signed_client.ts";
import { startDirectCluster } from "./direct_cluster.ts";
import { assertSameFile, readManifestJson, runFts, tempDir, writeRandomFile } from "./harness.ts";
import { startLyingServer } from "./lying_server.ts";

/** Names no command may accept; argv cannot carry NUL, so it is tested over the wire. */
const BAD_NAMES = [
  "../escaped.bin",
  "../../../../tmp/escaped.bin",
  "/tmp/escaped.bin",
  "sub/escaped.bin",
  "..\\escaped.bin",
  "..",
  ".",
  "new\nline.bin",
  "bell\u0007.bin",
  "del\u007f.bin",
  "x".repeat(256),
  "\u00e9".repeat(128), // 256 bytes of UTF-8
];

/**
 * Names that end in a suffix of fetch's helper files beside a download: a
 * file named so could be overwritten or deleted by a fetch of another file.
 */
const HELPER_NAMES = ["w.fts-partial", "w.fts-state", "w.fts-lock", "W.FTS-Partial"];

/** Every path under `root` (relative), to compare before and after. */
function _tree(root: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(join(root, prefix))) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    // The replay guard records every signed request's nonce, refused or not.
    if (path === "data/nonces") continue;
    out.push(path);
    if (entry.isDirectory) out.push(..._tree(root, path));
  }
  return out.sort();
}

Deno.test("hostile names: fetch, preload --as and upload --as refuse bad names and helper suffixes, touching nothing", async () => {
  const cluster = await startDirectCluster({ servers: 2, replicas: 1, files: { "ok.bin": 5000 } });
  try {
    const dest = join(cluster.work, "dest", "inner");
    await Deno.mkdir(dest, { recursive: true });
    const source = join(cluster.work, "payload.bin");
    await writeRandomFile(source, 3000, 5);
    const before = _tree(cluster.work);
    const generation = (await readManifestJson(cluster.dir)).generation;
    for (const name of BAD_NAMES) {
      const label = JSON.stringify(name);
      const fetched = await cluster.fts(["fetch", name, dest]);
      assert.equal(fetched.code, 2, `fetch ${label}: ${fetched.stderr}`);
      assert.match(fetched.stderr, /name|slash|control|not allowed|longer/i, label);
      const preloaded = await cluster.fts(["preload", source, "--as", name]);
      assert.equal(preloaded.code, 2, `preload --as ${label}: ${preloaded.stderr}`);
      const uploaded = await cluster.fts(["upload", source, "--as", name, "--operator"]);
      assert.equal(uploaded.code, 2, `upload --as ${label}: ${uploaded.stderr}`);
    }
    for (const name of HELPER_NAMES) {
      const label = JSON.stringify(name);
      const preloaded = await cluster.fts(["preload", source, "--as", name]);
      assert.equal(preloaded.code, 2, `preload --as ${label}: ${preloaded.stderr}`);
      assert.match(preloaded.stderr, /ends in \.fts-\w+, which fetch keeps for its own files/);
      const uploaded = await cluster.fts(["upload", source, "--as", name, "--operator"]);
      assert.equal(uploaded.code, 2, `upload --as ${label}: ${uploaded.stderr}`);
      // One stored before such names were refused is not fetched either.
      const fetched = await cluster.fts(["fetch", name, dest]);
      assert.equal(fetched.code, 1, `fetch ${label}: ${fetched.stderr}`);
      assert.match(fetched.stderr, /are fetch's own helper files; its owner can rename it/);
    }
    assert.deepEqual(_tree(cluster.work), before, "a refused name changed files");
    assert.equal((await readManifestJson(cluster.dir)).generation, generation);
    await assert.rejects(Deno.lstat("/tmp/escaped.bin"), Deno.errors.NotFound);
  } finally {
    await cluster.stop();
  }
});

Deno.test({
  name:
    "hostile names: a path that is not UTF-8 is refused, not turned into another path and written",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const cluster = await startDirectCluster({
      servers: 2,
      replicas: 1,
      files: { "ok.bin": 5000 },
    });
    try {
      const work = join(cluster.work, "latin1");
      await Deno.mkdir(work);
      const main = new URL("../main.ts", import.meta.url).pathname;
      // Deno cannot make a name that is not UTF-8; bash's printf can: "d\377" and "f\351.bin".
      const run = (script: string) =>
        new Deno.Command("bash", {
          args: ["-c", script, "fts", Deno.execPath(), main, cluster.dir],
          cwd: work,
          env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
          stdin: "null",
        }).output();
      const fts = '"$1" run -A "$2"';
      const made = await run(
        `mkdir "$(printf 'd\\377')" && printf x > "$(printf 'f\\351.bin')"`,
      );
      assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
      // Names as Deno shows them: it cannot read into "d\377" (see the check after).
      const names = () => [...Deno.readDirSync(work)].map((entry) => entry.name).sort();
      const before = { names: names(), data: _tree(cluster.dir) };
      const generation = (await readManifestJson(cluster.dir)).generation;
      for (
        const command of [
          `${fts} fetch ok.bin "$(printf 'd\\377')" --data "$3"`,
          `${fts} preload "$(printf 'f\\351.bin')" --data "$3"`,
        ]
      ) {
        const out = await run(command);
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 2, `${command}: ${stderr}`);
        assert.match(stderr, /is not UTF-8 .* rename it/, command);
      }
      // Before, the fetch made "d\uFFFD" (valid UTF-8), wrote the file there and said it was done.
      assert.deepEqual({ names: names(), data: _tree(cluster.dir) }, before);
      const left = await run(`ls -A "$(printf 'd\\377')"`);
      assert.equal(new TextDecoder().decode(left.stdout), "", "the fetch wrote into d\\377");
      assert.equal((await readManifestJson(cluster.dir)).generation, generation);
      // A real U+FFFD, typed in UTF-8, names a directory as any other character does.
      const out = await run(`${fts} fetch ok.bin "$(printf 'e\\357\\277\\275')" --data "$3"`);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      await assertSameFile(join(work, "e\uFFFD", "ok.bin"), cluster.source("ok.bin"));
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test("hostile names: signed publish and rename with bad names get BAD_NAME from the server", async () => {
  const cluster = await startDirectCluster({ servers: 2, replicas: 1, files: { "ok.bin": 5000 } });
  try {
    const identity = await loadOrCreateIdentity(operatorIdentityPath(cluster.dir));
    const generation = (await readManifestJson(cluster.dir)).generation;
    const before = _tree(cluster.work);
    const peer = await Peer.connect(`127.0.0.1:${cluster.ports[0]}`);
    try {
      // A delete of a bad name cannot be bound by looking it up: it names some content.
      const { cluster: clusterId, contentId } = await bindRequest(peer, {
        op: "file.delete",
        name: "ok.bin",
      });
      for (const name of [...BAD_NAMES, ...HELPER_NAMES, "nul\u0000.bin"]) {
        const label = JSON.stringify(name);
        const rename = await signRequest(
          identity,
          await bindRequest(peer, { op: "file.rename", name: "ok.bin", to: name }),
        );
        await assert.rejects(peer.request(rename), /BAD_NAME|File name/, `rename to ${label}`);
        const remove = await signRequest(identity, {
          op: "file.delete",
          cluster: clusterId,
          name,
          contentId,
        });
        await assert.rejects(peer.request(remove), /BAD_NAME|File name|No file/, label);
      }
    } finally {
      peer.close();
    }
    assert.equal((await readManifestJson(cluster.dir)).generation, generation);
    assert.deepEqual(_tree(cluster.work), before);
  } finally {
    await cluster.stop();
  }
});

/** A lying instance: answers every file.get with the entry `lie` makes of the requested name. */
function _lyingServer(lie: (name: string) => unknown) {
  return startLyingServer((request) =>
    request.op === "file.get"
      ? {
        header: { op: "file", name: request.name ?? "", generation: 1 },
        body: jsonBody({ entry: lie(String(request.name)), instances: { "666": "127.0.0.1:1" } }),
      }
      : undefined
  );
}

function _entry(name: string, digest = "a".repeat(64), replicas = ["666"]) {
  return {
    name,
    size: 10,
    partSize: 4096,
    owner: "operator",
    created: "",
    parts: [{ digest, size: 10, replicas }],
  };
}

Deno.test("hostile names: a lying server's entries never place a file outside the destination", async () => {
  const work = await tempDir("fts-liar-");
  const lies: { what: string; lie: (name: string) => unknown; expect: RegExp }[] = [
    {
      what: "traversal name",
      lie: () => _entry("../escaped.bin"),
      expect: /malformed|another file/,
    },
    {
      what: "absolute name",
      lie: () => _entry("/tmp/escaped.bin"),
      expect: /malformed|another file/,
    },
    {
      what: "NUL in the name",
      lie: (n) => _entry(`${n}\u0000x`),
      expect: /malformed|another file/,
    },
    { what: "another file's entry", lie: () => _entry("other.bin"), expect: /another file/ },
    {
      what: "traversal digest",
      lie: (n) => _entry(n, "../../../../tmp/escaped.bin"),
      expect: /malformed/,
    },
    {
      what: "replica id a path",
      lie: (n) => _entry(n, "b".repeat(64), ["../../../tmp/escaped.bin"]),
      expect: /part 0 .*replicas failed|Bad server address/,
    },
    { what: "entry not an object", lie: () => "entry", expect: /malformed/ },
  ];
  try {
    const dest = join(work, "dest");
    await Deno.mkdir(dest);
    for (const { what, lie, expect } of lies) {
      const liar = _lyingServer(lie);
      try {
        const result = await runFts([
          "fetch",
          "wanted.bin",
          dest,
          "--server",
          `127.0.0.1:${liar.port}`,
          "--data",
          join(work, "nodata"),
          "--timeout",
          "1s",
        ]);
        assert.equal(result.code, 1, `${what}: ${result.stderr}`);
        assert.match(result.stderr, expect, `${what}: ${result.stderr}`);
      } finally {
        await liar.stop();
      }
      assert.ok(
        _tree(work).every((path) => path === "dest" || path.startsWith("dest/wanted.bin")),
        `${what}: ${_tree(work).join(", ")}`,
      );
    }
    await assert.rejects(Deno.lstat("/tmp/escaped.bin"), Deno.errors.NotFound);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
