/**
 * The test hosts themselves: hosts talk TCP across the bridge, a cut host is
 * unreachable until restored, a shaped link is slow, killHost() kills every
 * process on a host and only there, and close() (or a sweep after a crashed
 * run) leaves no namespace behind.
 */
import assert from "node:assert/strict";
import { DENO } from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { cutUnsupported, hostsMode, sweepStaleNamespaces, TestHosts } from "../bench/test_hosts.ts";
import { processAlive } from "../lib/base/fs_util.ts";

/** How long the client script waits to connect and for the echo. */
const CLIENT_TIMEOUT_MS = 2_000;

/** A TCP echo server on ADDR:PORT (the arguments), saying `listening` when bound. */
const ECHO_SERVER = `
const listener = Deno.listen({ hostname: Deno.args[0], port: Number(Deno.args[1]) });
console.log("listening");
for await (const conn of listener) conn.readable.pipeTo(conn.writable).catch(() => {});
`;

/** Sends BYTES bytes to ADDR:PORT and prints `echoed N` once they are back, or `failed: why`. */
const ECHO_CLIENT = `
const [address, port, bytes, timeoutMs] = Deno.args;
const work = (async () => {
  const conn = await Deno.connect({ hostname: address, port: Number(port) });
  const data = new Uint8Array(Number(bytes)).fill(7);
  const writing = conn.write(data).then(async (n) => {
    let sent = n;
    while (sent < data.length) sent += await conn.write(data.subarray(sent));
  });
  let got = 0;
  const buffer = new Uint8Array(65536);
  while (got < data.length) {
    const n = await conn.read(buffer);
    if (n === null) break;
    got += n;
  }
  await writing;
  conn.close();
  return "echoed " + got;
})();
const timeout = new Promise((resolve) => setTimeout(() => resolve("failed: timeout"), Number(timeoutMs)));
console.log(await Promise.race([work.catch((e) => "failed: " + e.message), timeout]));
Deno.exit(0);
`;

function _namespaces(): string[] {
  const output = new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).outputSync();
  return new TextDecoder().decode(output.stdout).split("\n").map((line) => line.split(" ")[0]!)
    .filter((name) => name !== "");
}

async function _echo(net: TestHosts, from: number, to: number, port: number, bytes = 5) {
  const result = await net.run(from, DENO, [
    "eval",
    ECHO_CLIENT,
    net.hosts[to]!.address,
    String(port),
    String(bytes),
    String(CLIENT_TIMEOUT_MS),
  ]);
  return result.stdout.trim() || result.stderr.trim();
}

/** Runs `fn` on `count` new hosts, closing them whatever happens. */
async function _withHosts(count: number, fn: (net: TestHosts) => Promise<void>): Promise<void> {
  const net = await TestHosts.create(count);
  try {
    await fn(net);
  } finally {
    await net.close();
  }
}

async function _echoServer(net: TestHosts, host: number): Promise<number> {
  const port = net.portRange(1);
  const server = net.spawn(host, DENO, ["eval", ECHO_SERVER, net.hosts[host]!.address, `${port}`]);
  await server.waitFor(/listening/, 20_000);
  return port;
}

Deno.test("test hosts: two hosts talk TCP, each at its own address", async () => {
  await _withHosts(2, async (net) => {
    assert.notEqual(net.hosts[0]!.address, net.hosts[1]!.address);
    const port = await _echoServer(net, 0);
    assert.equal(await _echo(net, 1, 0, port), "echoed 5");
  });
});

Deno.test({
  name: "test hosts: cutHost stops TCP to the host, restoreHost brings it back",
  ignore: cutUnsupported(),
  async fn() {
    await _withHosts(2, async (net) => {
      const port = await _echoServer(net, 0);
      assert.equal(await _echo(net, 1, 0, port), "echoed 5");
      net.cutHost(0);
      assert.match(await _echo(net, 1, 0, port), /^failed/);
      net.restoreHost(0);
      assert.equal(await _echo(net, 1, 0, port), "echoed 5");
    });
  },
});

Deno.test({
  name: "test hosts: shape(8 Mbit/s) makes 2 MiB take at least a second",
  // tc lives in /usr/sbin, which a PATH may leave out even where ip is found.
  ignore: cutUnsupported() || missingTool("tc"),
  async fn() {
    await _withHosts(2, async (net) => {
      const port = await _echoServer(net, 0);
      net.shape(0, 8);
      const started = Date.now();
      const bytes = 2 * 1024 * 1024;
      const result = await net.run(1, DENO, [
        "eval",
        ECHO_CLIENT,
        net.hosts[0]!.address,
        String(port),
        String(bytes),
        "20000",
      ]);
      assert.equal(result.stdout.trim(), `echoed ${bytes}`);
      // 16 Mbit at 8 Mbit/s: two seconds; the bucket lets a little through at once.
      assert.ok(Date.now() - started >= 1_000, `took ${Date.now() - started} ms`);
    });
  },
});

Deno.test("test hosts: killHost kills every process on that host and only there", async () => {
  await _withHosts(2, async (net) => {
    const direct = net.spawn(0, "sleep", ["1000"]);
    // A grandchild the test never saw: killHost must find it too.
    const shell = net.spawn(0, "sh", ["-c", "sleep 1001 & echo $!; wait"]);
    const grandchild = Number((await shell.waitFor(/^(\d+)$/m))[1]);
    const other = net.spawn(1, "sleep", ["1000"]);
    assert.ok(processAlive(grandchild));
    const killed = await net.killHost(0);
    assert.ok(killed >= 3, `killed ${killed}`);
    assert.equal((await direct.status).signal, "SIGKILL");
    assert.equal((await shell.status).signal, "SIGKILL");
    for (let i = 0; i < 50 && processAlive(grandchild); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(!processAlive(grandchild), `grandchild ${grandchild} survived`);
    assert.ok(processAlive(other.pid), "a process on the other host was killed");
  });
});

Deno.test("test hosts: close kills everything and leaves no namespace; twice is fine", async () => {
  const net = await TestHosts.create(3);
  const sleeper = net.spawn(2, "sleep", ["1000"]);
  await net.close();
  await net.close();
  assert.equal((await sleeper.status).signal, "SIGKILL");
  if (hostsMode() === "netns") {
    const ours = [net.switchNamespace, ...net.hosts.map((host) => host.namespace)];
    assert.deepEqual(_namespaces().filter((name) => ours.includes(name)), []);
  }
});

Deno.test({
  name: "test hosts: namespaces of a crashed run (pid dead) are swept, live ones kept",
  ignore: cutUnsupported(),
  async fn() {
    // The pid of a process that has exited: its namespaces are stale.
    const gone = new Deno.Command("true").spawn();
    await gone.status;
    const stale = `fts-t${gone.pid}-abcdef-h0`;
    new Deno.Command("ip", { args: ["netns", "add", stale] }).outputSync();
    const net = await TestHosts.create(1); // sweeps
    try {
      assert.ok(!_namespaces().includes(stale), `${stale} was not swept`);
      assert.deepEqual(sweepStaleNamespaces(), []);
      assert.ok(_namespaces().includes(net.hosts[0]!.namespace));
    } finally {
      await net.close();
    }
  },
});

Deno.test("test hosts: fts runs inside a host", async () => {
  await _withHosts(1, async (net) => {
    const result = await net.fts(0, ["--help"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /fts/);
  });
});
