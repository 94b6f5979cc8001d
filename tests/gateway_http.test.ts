/**
 * The gateway with the real clients: curl and wget downloads byte-identical
 * to the original, resumes that fetch only the rest, ranges, validators,
 * every header a client relies on, the index and the Metalink document, bad
 * input of every kind, and 16 downloads at once. One cluster (4 instances,
 * R=2, 256 KiB parts) and one gateway serve every step.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, newDest, readManifestJson, startCluster } from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { curlHead, rawExchange, run, startGateway } from "./gateway_util.ts";
import { MAX_CONNECTIONS_PER_ADDRESS } from "../lib/gateway/gateway.ts";

const MiB = 1024 * 1024;
const PART = 256 * 1024;
const SIZE = 3 * MiB + 12_345;
const ODD_NAME = "naïve file (1).txt";

Deno.test({
  name: "gateway: curl, wget, ranges, validators, index, Metalink and bad input (4 instances, R=2)",
  ignore: missingTool("curl") || missingTool("wget"),
  async fn(t) {
    const cluster = await startCluster({
      servers: 4,
      replicas: 2,
      files: { "a.bin": SIZE, [ODD_NAME]: 70_001, "m.bin": 1_000, "m.bin.meta4": 999 },
    });
    const gateway = await startGateway(["--data", cluster.dir, "--header-timeout", "2s"]).catch(
      async (error) => {
        await cluster.stop();
        throw error;
      },
    );
    const source = join(cluster.work, "src", "a.bin");
    const original = await Deno.readFile(source);
    const url = `${gateway.url}/files/a.bin`;
    try {
      await t.step("curl -O, curl -OJ and wget: byte-identical, with every header", async () => {
        const dest = await newDest(cluster);
        assert.equal((await run("curl", ["-sS", "-f", "-O", url], { cwd: dest })).code, 0);
        await assertSameFile(join(dest, "a.bin"), source);
        const odd = `${gateway.url}/files/${encodeURIComponent(ODD_NAME)}`;
        const oj = await run("curl", ["-sS", "-f", "-O", "-J", odd], { cwd: dest });
        assert.equal(oj.code, 0, oj.stderr);
        // curl -J reads only the ASCII fallback of Content-Disposition (browsers take filename*).
        await assertSameFile(join(dest, "na_ve file (1).txt"), join(cluster.work, "src", ODD_NAME));
        // The same name typed in NFD (a decomposed "ï", as a Mac's clipboard gives it).
        const nfd = `${gateway.url}/files/${encodeURIComponent(ODD_NAME.normalize("NFD"))}`;
        const nfdDest = await newDest(cluster);
        const decomposed = await run("curl", ["-sS", "-f", "-o", "nfd.txt", nfd], { cwd: nfdDest });
        assert.equal(decomposed.code, 0, decomposed.stderr);
        await assertSameFile(join(nfdDest, "nfd.txt"), join(cluster.work, "src", ODD_NAME));
        const wgetDest = await newDest(cluster);
        const wget = await run("wget", ["-q", url], { cwd: wgetDest });
        assert.equal(wget.code, 0, wget.stderr);
        await assertSameFile(join(wgetDest, "a.bin"), source);

        const head = await curlHead(url, ["-I"]);
        assert.equal(head.status, 200);
        const h = head.headers;
        assert.equal(h.get("accept-ranges"), "bytes");
        assert.equal(h.get("content-length"), String(SIZE));
        assert.match(h.get("etag") ?? "", /^"[0-9a-f]{64}"$/);
        assert.ok(!Number.isNaN(Date.parse(h.get("last-modified") ?? "")));
        assert.equal(h.get("content-type"), "application/octet-stream");
        assert.match(h.get("content-disposition") ?? "", /filename\*=UTF-8''a\.bin/);
        assert.match(h.get("link") ?? "", /<\/files\/a\.bin\?metalink>; rel=describedby/);
        const oddHead = await curlHead(odd, ["-I"]);
        assert.equal(oddHead.headers.get("content-type"), "text/plain; charset=utf-8");
        assert.match(
          oddHead.headers.get("content-disposition") ?? "",
          /filename\*=UTF-8''na%C3%AFve%20file%20%281%29\.txt/,
        );
      });

      await t.step(
        "curl -C - and wget -c after an interrupted download fetch only the rest",
        async () => {
          for (const [tool, held] of [["curl", MiB + 77], ["wget", 2 * MiB + 5]] as const) {
            const dest = await newDest(cluster);
            await Deno.writeFile(join(dest, "a.bin"), original.subarray(0, held));
            const before = (await gateway.stats()).bodyBytes!;
            const args = tool === "curl"
              ? ["-sS", "-f", "-C", "-", "-o", "a.bin", url]
              : ["-q", "-c", url];
            const result = await run(tool, args, { cwd: dest });
            assert.equal(result.code, 0, `${tool}: ${result.stderr}`);
            await assertSameFile(join(dest, "a.bin"), source);
            const sent = (await gateway.stats()).bodyBytes! - before;
            assert.equal(sent, SIZE - held, `${tool} resumed at ${held}: the gateway sent ${sent}`);
          }
        },
      );

      await t.step(
        "curl -r: inside one part, across parts, open-ended and suffix ranges",
        async () => {
          const cases: [string, number, number][] = [
            ["10-99", 10, 100],
            [`${PART + 5}-${PART + 1000}`, PART + 5, PART + 1001],
            [`${PART - 3}-${5 * PART + 2}`, PART - 3, 5 * PART + 3],
            [`${SIZE - 10}-`, SIZE - 10, SIZE],
            ["-777", SIZE - 777, SIZE],
            [`0-${SIZE * 2}`, 0, SIZE],
          ];
          for (const [range, start, end] of cases) {
            const dest = join(await newDest(cluster), "part");
            const head = await curlHead(url, ["-r", range, "-o", dest]);
            assert.equal(head.status, 206, range);
            assert.equal(head.headers.get("content-range"), `bytes ${start}-${end - 1}/${SIZE}`);
            assert.deepEqual(await Deno.readFile(dest), original.subarray(start, end), range);
          }
        },
      );

      await t.step("validators: If-None-Match 304, If-Match 412, If-Range honoured", async () => {
        const etag = (await curlHead(url, ["-I"])).headers.get("etag")!;
        const same = await curlHead(url, ["-H", `If-None-Match: ${etag}`, "-o", "/dev/null"]);
        assert.equal(same.status, 304);
        assert.equal((await curlHead(url, ["-I", "-H", `If-None-Match: "other"`])).status, 200);
        const wrong = await curlHead(url, ["-H", `If-Match: "other"`, "-o", "/dev/null"]);
        assert.equal(wrong.status, 412);
        // An answer to HEAD has no content, a refusal neither (RFC 9110 section 9.3.2).
        const refusedHead = await rawExchange(
          gateway.port,
          `HEAD /files/a.bin HTTP/1.1\r\nHost: x\r\nIf-Match: "other"\r\nConnection: close\r\n\r\n`,
        );
        assert.match(refusedHead.response, /^HTTP\/1.1 412 /);
        assert.ok(refusedHead.response.endsWith("\r\n\r\n"), refusedHead.response);
        assert.equal((await curlHead(url, ["-I", "-H", `If-Match: ${etag}`])).status, 200);
        const current = await curlHead(url, ["-I", "-r", "5-9", "-H", `If-Range: ${etag}`]);
        assert.equal(current.status, 206);
        const stale = await curlHead(url, ["-I", "-r", "5-9", "-H", `If-Range: "stale"`]);
        assert.equal(stale.status, 200);
        assert.equal(stale.headers.get("content-length"), String(SIZE));
      });

      await t.step(
        "ranges: at the size and absurd are 416 with bytes */SIZE; others the whole file",
        async () => {
          for (
            const range of [`${SIZE}-`, `${SIZE}-${SIZE + 5}`, "99999999999999999999999999-", "-0"]
          ) {
            const head = await curlHead(url, ["-I", "-H", `Range: bytes=${range}`]);
            assert.equal(head.status, 416, range);
            assert.equal(head.headers.get("content-range"), `bytes */${SIZE}`, range);
          }
          for (const range of ["bytes=5-2", "bytes=0-1,5-9", "items=0-5", "bytes=abc"]) {
            const head = await curlHead(url, ["-I", "-H", `Range: ${range}`]);
            assert.equal(head.status, 200, range);
            assert.equal(head.headers.get("content-length"), String(SIZE), range);
          }
        },
      );

      await t.step(
        "bad input: 404 with the nearest name, traversal, 405, 431, slowloris; still serving",
        async () => {
          const missing = await curlHead(`${gateway.url}/files/a.bim`);
          assert.equal(missing.status, 404);
          assert.match(missing.body, /Did you mean <a href="\/files\/a\.bin">a\.bin<\/a>/);
          for (
            const path of [
              "/files/..%2f..%2fetc%2fpasswd",
              "/files/%2e%2e",
              "/files/..%5c..%5cetc%5cpasswd",
              "/files/../../etc/passwd",
              "/../../etc/passwd",
              "/files/%2e%2e/%2e%2e/etc/passwd",
              "/files/a.bin%00",
              "/files/%ZZ",
            ]
          ) {
            const answer = await curlHead(`${gateway.url}${path}`, ["--path-as-is"]);
            assert.ok([400, 404].includes(answer.status), `${path}: ${answer.status}`);
            assert.doesNotMatch(answer.body, /root:/, path);
          }
          for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) {
            const answer = await curlHead(url, ["-X", method, "-o", "/dev/null"]);
            assert.equal(answer.status, 405, method);
            assert.equal(answer.headers.get("allow"), "GET, HEAD");
          }
          const big = await curlHead(url, ["-I", "-H", `X-Filler: ${"x".repeat(20_000)}`]);
          assert.equal(big.status, 431);
          const longLine = await rawExchange(
            gateway.port,
            `GET /${"a".repeat(20_000)} HTTP/1.1\r\n`,
          );
          assert.match(longLine.response, /^HTTP\/1.1 414 /);
          const garbage = await rawExchange(gateway.port, "\x16\x03\x01 hello\r\n\r\n");
          assert.match(garbage.response, /^HTTP\/1.1 400 /);
          const old = await rawExchange(gateway.port, "GET / HTTP/2.0\r\n\r\n");
          assert.match(old.response, /^HTTP\/1.1 505 /);
          // RFC 9112 section 3.2: Host is required in HTTP/1.1, and one only.
          const hostless = await rawExchange(gateway.port, "GET /files/a.bin HTTP/1.1\r\n\r\n");
          assert.match(hostless.response, /^HTTP\/1.1 400 .*\r\n[^]*needs a Host header/);
          const twoHosts = await rawExchange(
            gateway.port,
            "GET /files/a.bin HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
          );
          assert.match(twoHosts.response, /^HTTP\/1.1 400 [^]*more than one Host/);
          const http10 = await rawExchange(gateway.port, "HEAD /files/a.bin HTTP/1.0\r\n\r\n");
          assert.match(http10.response, /^HTTP\/1.1 200 /);
          // Slowloris: a head that never ends is cut off at the header deadline (2 s here).
          const slow = await rawExchange(gateway.port, "GET /files/a.bin HTTP/1.1\r\nHost: x\r\n");
          assert.equal(slow.response, "");
          assert.ok(
            slow.closedAfterMs >= 1_500 && slow.closedAfterMs < 8_000,
            `${slow.closedAfterMs}`,
          );
          assert.equal(
            gateway.process.child.pid > 0 && (await gateway.stats()).requests! > 0,
            true,
          );
          const after = await curlHead(url, ["-I"]);
          assert.equal(after.status, 200);
        },
      );

      await t.step(
        "one address cannot take every connection; others are still served",
        async () => {
          // Idle connections from 127.0.0.1, as many as one address may hold.
          const idle: Deno.Conn[] = [];
          try {
            for (let i = 0; i < MAX_CONNECTIONS_PER_ADDRESS; i++) {
              idle.push(await Deno.connect({ hostname: "127.0.0.1", port: gateway.port }));
            }
            const refused = await run("curl", ["-sS", "-f", "-o", "/dev/null", url]);
            assert.notEqual(refused.code, 0);
            const dest = await newDest(cluster);
            const other = await run("curl", [
              "-sS",
              "-f",
              "--interface",
              "127.0.0.2",
              "-o",
              join(dest, "a.bin"),
              url,
            ]);
            assert.equal(other.code, 0, other.stderr);
            await assertSameFile(join(dest, "a.bin"), source);
          } finally {
            for (const conn of idle) conn.close();
          }
          // Their slots come back as they close.
          for (let i = 0;; i++) {
            if ((await run("curl", ["-sS", "-f", "-o", "/dev/null", url])).code === 0) break;
            assert.ok(i < 50, "the address's connections were not given back");
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        },
      );

      await t.step(
        "a request with a body, or pipelined ones: the answer still arrives whole",
        async () => {
          const encoder = new TextEncoder();
          const requests = [
            // A body the gateway never reads (RFC 9112 section 9.6: close in stages).
            [`GET /files/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n`, 100_000],
            // A second request right behind the first, on one connection.
            [`GET /files/a.bin HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n`, 0],
          ] as const;
          for (const [head, bodyBytes] of requests) {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: gateway.port });
            try {
              await conn.write(encoder.encode(head));
              await new Promise((r) => setTimeout(r, 100));
              if (bodyBytes > 0) await conn.write(new Uint8Array(bodyBytes));
              // Slow to read: the gateway is done writing (into the socket) long before.
              await new Promise((r) => setTimeout(r, 500));
              const chunks: Uint8Array[] = [];
              const buffer = new Uint8Array(256 * 1024);
              while (true) {
                const n = await conn.read(buffer).catch((e) => {
                  throw new Error(`read after ${chunks.length} chunks: ${e}`);
                });
                if (n === null) break;
                chunks.push(buffer.slice(0, n));
              }
              const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
              chunks.reduce((at, c) => (all.set(c, at), at + c.length), 0);
              const text = new TextDecoder("latin1").decode(all.subarray(0, 2048));
              assert.match(text, /^HTTP\/1.1 200 /);
              const headEnd = text.indexOf("\r\n\r\n") + 4;
              assert.equal(all.length - headEnd, SIZE, head.split("\r\n")[0]);
              assert.deepEqual(all.subarray(headEnd), original);
            } finally {
              conn.close();
            }
          }
        },
      );

      await t.step("16 concurrent curl downloads, all byte-identical", async () => {
        const dest = await newDest(cluster);
        const results = await Promise.all(
          Array.from(
            { length: 16 },
            (_, i) => run("curl", ["-sS", "-f", "-o", `copy-${i}`, url], { cwd: dest }),
          ),
        );
        results.forEach((r, i) => assert.equal(r.code, 0, `download ${i}: ${r.stderr}`));
        for (let i = 0; i < 16; i++) await assertSameFile(join(dest, `copy-${i}`), source);
        assert.equal((await gateway.stats()).partBytesHeld, 0);
      });

      await t.step(
        "index: HTML and JSON list every file; the Metalink lists every part's SHA-256",
        async () => {
          const html = await curlHead(`${gateway.url}/`);
          assert.equal(html.status, 200);
          assert.match(html.body, /<a href="\/files\/a\.bin" download>a\.bin<\/a>/);
          assert.match(html.body, /href="\/files\/a\.bin\.meta4"/);
          assert.match(html.body, /class="health healthy"/);
          const json = JSON.parse((await curlHead(`${gateway.url}/?format=json`)).body);
          const names = json.files.map((f: { name: string }) => f.name);
          assert.deepEqual(
            names,
            ["a.bin", "m.bin", "m.bin.meta4", ODD_NAME].sort((a, b) => a.localeCompare(b)),
          );
          const a = json.files.find((f: { name: string }) => f.name === "a.bin");
          assert.equal(a.size, SIZE);
          assert.equal(a.health, "healthy");
          const meta = await curlHead(`${url}.meta4`);
          assert.equal(meta.headers.get("content-type"), "application/metalink4+xml");
          const manifest = await readManifestJson(cluster.dir);
          const entry = manifest.files["a.bin"]!;
          const hashes = [...meta.body.matchAll(/<hash>([0-9a-f]{64})<\/hash>/g)].map((m) => m[1]);
          assert.deepEqual(hashes, entry.parts.map((p) => p.digest));
          assert.match(meta.body, new RegExp(`<pieces length="${PART}" type="sha-256">`));
          assert.match(meta.body, new RegExp(`<size>${SIZE}</size>`));
          assert.ok(meta.body.includes(`<url priority="1">${url}</url>`), meta.body);
          assert.equal((await curlHead(`${url}?metalink`)).body, meta.body);
        },
      );

      await t.step(
        "a file named NAME.meta4 is served as itself; NAME?metalink is NAME's",
        async () => {
          const dest = await newDest(cluster);
          const got = join(dest, "got");
          const stored = `${gateway.url}/files/m.bin.meta4`;
          assert.equal((await run("curl", ["-sS", "-f", "-o", got, stored])).code, 0);
          await assertSameFile(got, join(cluster.work, "src", "m.bin.meta4"));
          const meta = await curlHead(`${gateway.url}/files/m.bin?metalink`);
          assert.equal(meta.headers.get("content-type"), "application/metalink4+xml");
          assert.match(meta.body, /<size>1000<\/size>/);
          const head = await curlHead(`${gateway.url}/files/m.bin`, ["-I"]);
          assert.match(head.headers.get("link") ?? "", /<\/files\/m\.bin\?metalink>/);
          const json = JSON.parse((await curlHead(`${gateway.url}/?format=json`)).body);
          const metalinks = Object.fromEntries(
            json.files.map((f: { name: string; metalink: string }) => [f.name, f.metalink]),
          );
          assert.equal(metalinks["m.bin"], "/files/m.bin?metalink");
          assert.equal(metalinks["a.bin"], "/files/a.bin.meta4");
          const missing = await curlHead(`${gateway.url}/files/none.bin.meta4`);
          assert.equal(missing.status, 404);
        },
      );
    } finally {
      await gateway.stop();
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "gateway: fts cluster --http 0 starts a gateway beside its instances and stops it with them",
  ignore: missingTool("curl"),
  async fn() {
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      files: { "b.bin": MiB + 5 },
      clusterArgs: ["--http", "0"],
    });
    try {
      const match = await cluster.supervisor.waitFor(/HTTP gateway at (http:\/\/\S+?)\/ /, 30_000);
      const url = match[1]!;
      const dest = await newDest(cluster);
      const got = await run("curl", ["-sS", "-f", "-O", `${url}/files/b.bin`], { cwd: dest });
      assert.equal(got.code, 0, got.stderr);
      await assertSameFile(join(dest, "b.bin"), join(cluster.work, "src", "b.bin"));
      const records = [...Deno.readDirSync(join(cluster.dir, "run", "gateways"))];
      assert.equal(records.length, 1);
      cluster.supervisor.kill("SIGTERM");
      await cluster.supervisor.status;
      // Stopped with the cluster: nothing listens there any more, and its record is gone.
      const after = await run("curl", ["-sS", "-o", "/dev/null", `${url}/`]);
      assert.equal(after.code, 7, after.stderr);
      assert.deepEqual([...Deno.readDirSync(join(cluster.dir, "run", "gateways"))], []);
    } finally {
      await cluster.stop();
    }
  },
});
