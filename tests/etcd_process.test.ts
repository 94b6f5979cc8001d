/**
 * The test etcd itself (bench/etcd_process.ts): a 3-member cluster on loopback
 * addresses keeps taking writes with one member SIGKILLed, refuses them within
 * a timeout with two killed, and takes them again once one is restarted; and
 * one etcd inside a test host, reached from another host's namespace.
 */
import assert from "node:assert/strict";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { cutUnsupported, TestHosts } from "../bench/test_hosts.ts";

/** How long a write without quorum may take to fail here. */
const NO_QUORUM_TIMEOUT_MS = 3_000;
/**
 * How long the survivors may take to accept writes again after a member or
 * host is lost: an election (1 s timeout) and, on a loaded machine, more.
 */
const RECOVERY_MS = 30_000;

Deno.test({
  name: "etcd process: 3 members on 127.0.0.1-3; one killed, writes work; two, they fail; restart",
  ignore: missingTool("etcd"),
  async fn() {
    const etcd = await EtcdProcess.start({
      members: 3,
      addresses: ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
    });
    try {
      assert.equal(etcd.endpoints.split(",").length, 3);
      await etcd.put("fts-test/a", "one");
      assert.equal(await etcd.get("fts-test/a", { via: 2 }), "one");
      assert.equal(await etcd.get("fts-test/none"), undefined);

      await etcd.kill(0);
      await etcd.putWithin("fts-test/b", "two", RECOVERY_MS, 1);
      assert.equal(await etcd.get("fts-test/b", { via: 2 }), "two");

      await etcd.kill(1);
      const started = Date.now();
      await assert.rejects(
        etcd.put("fts-test/c", "three", { via: 2, timeoutMs: NO_QUORUM_TIMEOUT_MS }),
        /etcd put fts-test\/c failed/,
      );
      assert.ok(Date.now() - started < NO_QUORUM_TIMEOUT_MS + 1_000);

      await etcd.restart(1);
      await etcd.putWithin("fts-test/c", "three", RECOVERY_MS, 1);
      assert.equal(await etcd.get("fts-test/c", { via: 2 }), "three");
      // The data survived the SIGKILL.
      assert.equal(await etcd.get("fts-test/a", { via: 1 }), "one");
    } finally {
      await etcd.stop();
    }
  },
});

Deno.test({
  name: "etcd process: one member inside a test host, written there, read from another host",
  ignore: missingTool("etcd"),
  async fn() {
    const net = await TestHosts.create(2);
    try {
      const etcd = await EtcdProcess.start({ net, hosts: [0] });
      try {
        assert.equal(etcd.members[0]!.address, net.hosts[0]!.address);
        await etcd.put("fts-test/x", "in a host");
        const answer = await net.fetch(1, `${etcd.endpoints}/v3/kv/range`, {
          json: { key: btoa("fts-test/x") },
        });
        assert.ok("status" in answer && answer.status === 200, JSON.stringify(answer));
        assert.equal(atob(JSON.parse(answer.body).kvs[0].value), "in a host");
        // Its host dies: etcd with it.
        await net.killHost(0);
        const gone = await net.fetch(1, `${etcd.endpoints}/health`, { timeoutMs: 2_000 });
        assert.ok("error" in gone, JSON.stringify(gone));
      } finally {
        await etcd.stop();
      }
    } finally {
      await net.close();
    }
  },
});

Deno.test({
  name: "etcd process: 3 members in 3 test hosts; one host cut off, writes still work",
  ignore: missingTool("etcd") || cutUnsupported(),
  async fn() {
    const net = await TestHosts.create(3);
    try {
      const etcd = await EtcdProcess.start({ net, members: 3 });
      try {
        await etcd.put("fts-test/y", "before");
        net.cutHost(0);
        await etcd.putWithin("fts-test/y", "after", RECOVERY_MS, 1);
        assert.equal(await etcd.get("fts-test/y", { via: 2 }), "after");
        net.restoreHost(0);
        await etcd.waitHealthy(0);
      } finally {
        await etcd.stop();
      }
    } finally {
      await net.close();
    }
  },
});
