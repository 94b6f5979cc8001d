/**
 * Handlers of the repair ops: list what the instance stores and has
 * quarantined, and re-hash one stored copy on request. A copy that fails is
 * quarantined at once, so it is never served again; the caller repairs it
 * from a good replica.
 */
import { ProtocolError } from "../wire/errors.ts";
import { jsonBody } from "../wire/frame.ts";
import { type VerifyStatus } from "../wire/ops_repair.ts";
import { type HandlerFamily, type Instance } from "./handler.ts";

export const REPAIR_HANDLERS: HandlerFamily<"part.list" | "part.verify"> = {
  "part.list": async ({ store }, { reply }) => {
    store.assertNotStalled();
    const parts = await store.listWithSizes();
    const quarantined = await store.listQuarantined();
    await reply({ op: "parts", count: parts.length }, jsonBody({ parts, quarantined }));
  },
  "part.verify": async (instance, { request, reply, state }) => {
    // Waits for this client's hashing budget first; a missing part costs nothing.
    instance.store.assertNotStalled();
    const size = await instance.store.sizeOf(request.digest);
    if (size !== undefined) await instance.verifyLimiter(state.address).take(size);
    const status = await _verifyPart(instance, request.digest);
    await reply({ op: "verified", digest: request.digest, status });
  },
};

async function _verifyPart(instance: Instance, digest: string): Promise<VerifyStatus> {
  const { store } = instance;
  let good: boolean;
  try {
    good = await store.verify(digest);
  } catch (error) {
    if (error instanceof ProtocolError) {
      if (error.code === "QUARANTINED") return "quarantined";
      if (error.code === "NOT_FOUND") return "missing";
      throw error;
    }
    // A copy that cannot be read (an I/O error, a directory in its place) is
    // no more a copy than a rotten one: out of service, and made again.
    console.error(
      `instance ${instance.id}: the copy of part ${digest.slice(0, 12)} at ${
        store.pathOf(digest)
      } cannot be read (${(error as Error).message}); quarantined`,
    );
    good = false;
  }
  instance.counters.partsVerified++;
  if (good) return "ok";
  if (await store.quarantine(digest).catch(() => false)) instance.counters.quarantined++;
  return "corrupt";
}
