/**
 * Handlers of the control ops: hello (which every connection must send
 * first), ping, the instance's counters, and the cluster facts an uploading
 * client needs (from mutations.ts, loaded on first use).
 */
import { jsonBody, PROTOCOL_VERSION } from "../wire/frame.ts";
import { type HandlerFamily } from "./handler.ts";

export const CONTROL_HANDLERS: HandlerFamily<"hello" | "ping" | "stats" | "cluster.info"> = {
  "hello": async (instance, { state, reply }) => {
    const { manifest } = instance;
    state.greeted = true;
    // A damaged manifest must not stop the instance serving parts.
    const generation = await manifest.revision().catch(() => null);
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
