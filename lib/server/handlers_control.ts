/**
 * Handlers of the control ops: hello (which every connection must send
 * first), ping, the instance's counters, and the cluster facts an uploading
 * client needs (from mutations.ts, loaded on first use).
 */
import { raceDeadline } from "../base/deadline.ts";
import { jsonBody, PROTOCOL_VERSION } from "../wire/frame.ts";
import { type HandlerFamily } from "./handler.ts";

/**
 * How long hello waits for the manifest's generation before it answers
 * without one. In etcd the generation is a read that waits for a quorum (2 s
 * when etcd has lost it), and every probe of an instance (fts status, the
 * supervisor's watch, a client's connect) starts with hello: they took a live
 * instance for a dead one.
 */
export const HELLO_GENERATION_WAIT_MS = 250;

export const CONTROL_HANDLERS: HandlerFamily<"hello" | "ping" | "stats" | "cluster.info"> = {
  "hello": async (instance, { state, reply }) => {
    const { manifest } = instance;
    state.greeted = true;
    // A damaged manifest, or one slow to read, must not stop the instance serving parts.
    const generation = await raceDeadline(
      manifest.revision(),
      HELLO_GENERATION_WAIT_MS,
      () => new Error("slow"),
    ).catch(() => null);
    await reply({ op: "hello", version: PROTOCOL_VERSION, id: instance.id, generation });
  },
  "ping": async (_instance, { reply }) => {
    await reply({ op: "pong" });
  },
  "stats": async (instance, { reply }) => {
    await reply({
      op: "stats",
      id: instance.id,
      // Never negative, though the wall clock may step back (the reply check refuses that).
      uptimeMs: Math.max(0, Date.now() - instance.startedAt),
      ...instance.counters,
      // Answering is not serving: an instance that cannot read its parts says so.
      ...storeError(instance.store),
    });
  },
  "cluster.info": async (instance, { request, reply }) => {
    const { header, body } = await (await instance.mutations()).clusterInfo(
      instance.addressOf,
      request.key === undefined ? undefined : { key: request.key, name: request.name },
    );
    await reply(header, jsonBody(body));
  },
};

function storeError(store: { problem(): string | undefined }): { storeError?: string } {
  const problem = store.problem();
  return problem === undefined ? {} : { storeError: problem };
}
