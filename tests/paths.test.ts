import assert from "node:assert/strict";
import { posix } from "node:path";
import { fileURLToPath } from "node:url";
import {
  basename,
  dirname,
  fromFileUrl,
  isAbsolute,
  join,
  normalize,
  resolve,
} from "../lib/base/paths.ts";
import { newSeed, pick, randomInt, seededRandom } from "./seeded_random.ts";

/** Paths with every shape node:path treats specially. */
const CASES = [
  "",
  ".",
  "..",
  "/",
  "//",
  "///",
  "a",
  "a/",
  "a//",
  "/a",
  "//a",
  "///a",
  "a/b",
  "a//b",
  "a/b/",
  "/a/b/c",
  "//a//b",
  "./a",
  "../a",
  "a/./b",
  "a/../b",
  "a/b/../..",
  "a/b/../../..",
  "/..",
  "/../a",
  "../..",
  "...",
  "a/.../b",
  ".a/..b/c..",
  "fts-data/instances/9001/parts/ab/" + "ab".repeat(32),
  "/tmp/fts-data/../run/9001.pid",
  "ünï code/ä.bin",
];

/** A random path over the characters that matter: "/", ".", and a letter. */
function randomPath(random: () => number): string {
  const length = randomInt(random, 0, 12);
  return Array.from({ length }, () => pick(random, ["/", "/", ".", ".", "a", "b"])).join("");
}

Deno.test("paths: each function matches node:path's posix results on the table", () => {
  for (const path of CASES) {
    assert.equal(normalize(path), posix.normalize(path), `normalize(${JSON.stringify(path)})`);
    assert.equal(dirname(path), posix.dirname(path), `dirname(${JSON.stringify(path)})`);
    assert.equal(basename(path), posix.basename(path), `basename(${JSON.stringify(path)})`);
    assert.equal(isAbsolute(path), posix.isAbsolute(path), `isAbsolute(${JSON.stringify(path)})`);
    assert.equal(resolve(path), posix.resolve(path), `resolve(${JSON.stringify(path)})`);
    for (const other of CASES) {
      const label = `(${JSON.stringify(path)}, ${JSON.stringify(other)})`;
      assert.equal(join(path, other), posix.join(path, other), `join${label}`);
      assert.equal(resolve(path, other), posix.resolve(path, other), `resolve${label}`);
    }
  }
  assert.equal(join(), posix.join());
  assert.equal(resolve(), posix.resolve());
  assert.equal(join("a", "", "b", "..", "c/"), posix.join("a", "", "b", "..", "c/"));
  assert.equal(resolve("x", "/abs", "y", "", "z/.."), posix.resolve("x", "/abs", "y", "", "z/.."));
});

Deno.test("paths: each function matches node:path's posix results on random paths", () => {
  const seed = newSeed();
  const random = seededRandom(seed);
  for (let i = 0; i < 2_000; i++) {
    const a = randomPath(random);
    const b = randomPath(random);
    const c = randomPath(random);
    const label = `seed ${seed}: ${JSON.stringify([a, b, c])}`;
    assert.equal(normalize(a), posix.normalize(a), `normalize ${label}`);
    assert.equal(dirname(a), posix.dirname(a), `dirname ${label}`);
    assert.equal(basename(a), posix.basename(a), `basename ${label}`);
    assert.equal(join(a, b, c), posix.join(a, b, c), `join ${label}`);
    assert.equal(resolve(a, b, c), posix.resolve(a, b, c), `resolve ${label}`);
  }
});

Deno.test("resolve() starts from Deno.cwd() for a relative path", () => {
  assert.equal(resolve("x/../y"), posix.join(Deno.cwd(), "y"));
});

Deno.test("fromFileUrl() matches node:url's fileURLToPath and refuses what it refuses", () => {
  for (
    const url of [
      "file:///work/main/main.ts",
      "file:///tmp/a%20b/%C3%BC.ts",
      "file://localhost/etc/x",
      "file:///a/b/../c",
      "file:///",
    ]
  ) {
    assert.equal(fromFileUrl(url), fileURLToPath(url), url);
    assert.equal(fromFileUrl(new URL(url)), fileURLToPath(new URL(url)), url);
  }
  assert.equal(
    fromFileUrl(new URL("../lib/base/paths.ts", import.meta.url)),
    fileURLToPath(
      new URL("../lib/base/paths.ts", import.meta.url),
    ),
  );
  for (
    const url of ["https://example.com/a", "file://otherhost/a", "file:///a%2Fb", "file:///a%2fb"]
  ) {
    assert.throws(() => fileURLToPath(url), TypeError, url);
    assert.throws(() => fromFileUrl(url), TypeError, url);
  }
});
