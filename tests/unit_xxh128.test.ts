import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Xxh128,
  type Xxh128Backend,
  xxh128Backend,
  xxh128Hex,
  xxh128NativeUpdate,
} from "../lib/hash/xxh128.ts";
import { missingTool } from "./missing_tool.ts";
import { randomBytes, seededBytes, withTempDir } from "./unit_helpers.ts";

/**
 * `xxhsum -H2` (xxHash 0.8.1, Debian) of `seededBytes(length, length + 1)`: every
 * length class XXH3-128 treats differently (0, 1-3, 4-8, 9-16, 17-128,
 * 129-240, longer), and lengths around the module's 256 KiB input buffer.
 */
const VECTORS: [number, string][] = [
  [0, "99aa06d3014798d86001c324468d497f"],
  [1, "9d1b9bc4078a3e7274d3766ca02423f3"],
  [3, "79e9ec2f3ece70b7859ff6a1405c37a8"],
  [16, "6eb5d649f1f1f206f058ce5e4cc93034"],
  [17, "d90d9405e0a258383bb406307f2f6142"],
  [128, "93ae0f9e0f418a42915aa3521c4ce786"],
  [129, "73ba120425d4c67aa2b576165817152f"],
  [240, "017c6916ee353d6d99989059d6b9927c"],
  [241, "b175d51b5e4bfcbea71265fac99380b6"],
  [1000, "130a963700764702f951571e2142705b"],
  [65536, "cae23cb891ab8bff20cd9269e4eef447"],
  [262144, "1dd01dc476473faadcce1634acf34241"],
  [262145, "b68bd121e365b0510129cf14c3c6d5ee"],
  [1048583, "c0065043884de020967fbd11ce971a12"],
];

/** Both backends where the system's libxxhash loads, else the WebAssembly one. */
const BACKENDS: Xxh128Backend[] = xxh128Backend() === "native" ? ["native", "wasm"] : ["wasm"];

Deno.test("xxh128: digests match xxhsum -H2's for every length class, on each backend", () => {
  for (const backend of BACKENDS) {
    for (const [length, expected] of VECTORS) {
      assert.equal(
        xxh128Hex(seededBytes(length, length + 1), { backend }),
        expected,
        `${backend}, length ${length}`,
      );
    }
  }
});

Deno.test("xxh128: any split into updates gives the one-shot digest, on each backend", () => {
  const data = seededBytes(1048583, 1048584);
  const splits = [[1], [7, 100_000], [262_144], [262_143, 2], [3, 64, 240, 500_000]];
  for (const backend of BACKENDS) {
    for (const sizes of splits) {
      const hash = new Xxh128({ backend });
      assert.equal(hash.backend, backend);
      let at = 0;
      for (let i = 0; at < data.length; i++) {
        const n = sizes[i % sizes.length]!;
        hash.update(data.subarray(at, at + n));
        at += n;
      }
      assert.equal(hash.digest(), VECTORS.at(-1)![1], `${backend}, splits ${sizes}`);
    }
    // reset() starts over.
    const used = new Xxh128({ backend }).update(data);
    assert.equal(
      used.reset().update(seededBytes(17, 18)).digest(),
      "d90d9405e0a258383bb406307f2f6142",
    );
    // Two hashers at once keep separate states.
    const a = new Xxh128({ backend }).update(data.subarray(0, 1000));
    const b = new Xxh128({ backend }).update(seededBytes(17, 18));
    assert.equal(a.digest(), xxh128Hex(data.subarray(0, 1000), { backend: "wasm" }));
    assert.equal(b.digest(), "d90d9405e0a258383bb406307f2f6142");
  }
});

Deno.test("xxh128: updateFromFileSync() hashes a file range and stops at end of file, on each backend", async () => {
  await withTempDir("fts-unit-xxh-", async (dir) => {
    const path = join(dir, "f.bin");
    const data = seededBytes(1048583, 1048584);
    await Deno.writeFile(path, data);
    const file = Deno.openSync(path);
    try {
      for (const backend of BACKENDS) {
        file.seekSync(0, Deno.SeekMode.Start);
        const whole = new Xxh128({ backend });
        assert.equal(whole.updateFromFileSync(file, data.length), data.length);
        assert.equal(whole.digest(), VECTORS.at(-1)![1], backend);

        file.seekSync(1000, Deno.SeekMode.Start);
        const range = new Xxh128({ backend });
        assert.equal(range.updateFromFileSync(file, 300_000), 300_000);
        assert.equal(range.digest(), xxh128Hex(data.subarray(1000, 301_000)), backend);

        // Past the end: only what is there.
        file.seekSync(data.length - 5, Deno.SeekMode.Start);
        const tail = new Xxh128({ backend });
        assert.equal(tail.updateFromFileSync(file, 1024), 5);
        assert.equal(tail.digest(), xxh128Hex(data.subarray(data.length - 5)), backend);
      }
    } finally {
      file.close();
    }
  });
});

Deno.test({
  name: "xxh128: where libxxhash is installed, hashers use it (the fast check's fast path)",
  ignore: Deno.build.os !== "linux" || missingTool("libxxhash.so.0"),
  fn: () => {
    assert.equal(xxh128Backend(), "native");
    assert.equal(new Xxh128().backend, "native");
    // Its update that picks the CPU's vector unit at run time, when it has one
    // (2.7x the baseline SSE2 code here); the digests above come from it.
    const exported = Deno.dlopen("libxxhash.so.0", {
      XXH3_128bits_update_dispatch: {
        parameters: ["pointer", "buffer", "usize"],
        result: "i32",
        optional: true,
      },
    });
    try {
      assert.equal(
        xxh128NativeUpdate(),
        exported.symbols.XXH3_128bits_update_dispatch ? "dispatch" : "baseline",
      );
    } finally {
      exported.close();
    }
  },
});

// Where xxhsum is missing the vectors above still apply.
Deno.test({
  name: "xxh128: digests of random files match xxhsum -H2's",
  ignore: missingTool("xxhsum"),
  fn: async () => {
    await withTempDir("fts-unit-xxh-", async (dir) => {
      const sizes = [0, 5, 200, 4096, 262_144 + 64, 3 * 1024 * 1024 + 11];
      const paths = [];
      for (const size of sizes) {
        const path = join(dir, `r${size}`);
        await Deno.writeFile(path, randomBytes(size));
        paths.push(path);
      }
      const out = await new Deno.Command("xxhsum", { args: ["-H2", ...paths] }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
      for (const [i, path] of paths.entries()) {
        const expected = lines[i]!.split(/\s+/)[0];
        for (const backend of BACKENDS) {
          assert.equal(xxh128Hex(await Deno.readFile(path), { backend }), expected, path);
        }
      }
    });
  },
});
