import assert from "node:assert/strict";
import { join } from "node:path";
import { Peer } from "../lib/client/peer.ts";
import { DENO, freePortRange, MAIN, tempDir } from "./harness.ts";

Deno.test("serve: running out of descriptors pauses accepting, it does not stop the instance", async () => {
  const work = await tempDir();
  const port = freePortRange(1);
  // A low descriptor limit: a flood of connections hits EMFILE in accept().
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -n 48 && exec "${DENO}" run --allow-all --quiet "${MAIN}" serve --port ${port} --data "${
        join(work, "data")
      }"`,
    ],
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = { text: "" };
  const drain = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) output.text += decoder.decode(chunk);
  })();
  const drainErr = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) output.text += decoder.decode(chunk);
  })();
  const conns: Deno.TcpConn[] = [];
  try {
    const deadline = Date.now() + 30_000;
    while (!output.text.includes("ready") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(output.text, /ready/);
    for (let i = 0; i < 80; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    // Give the instance time to run into the limit.
    const until = Date.now() + 10_000;
    while (!output.text.includes("accept failed") && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(output.text, /accept failed: .*retrying/);
    for (const conn of conns.splice(0)) conn.close();
    // Once descriptors are free again, a new client is served.
    let served = false;
    const retryUntil = Date.now() + 20_000;
    while (!served && Date.now() < retryUntil) {
      try {
        const peer = await Peer.connect(`127.0.0.1:${port}`, { stallTimeoutMs: 2_000 });
        await peer.ping();
        peer.close();
        served = true;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.ok(served, `the instance stopped serving:\n${output.text}`);
  } finally {
    for (const conn of conns) conn.close();
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await Promise.all([drain, drainErr]);
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
