/**
 * Handlers of the signed mutations (publish, delete, rename). The checks and
 * the manifest changes live in mutations.ts, loaded on first use so that an
 * instance that only serves parts never loads that code; here a publish's
 * part list is held to a size and to a memory budget shared by all
 * connections.
 */
import { ProtocolError } from "../wire/errors.ts";
import { MAX_PUBLISH_BODY_BYTES } from "../wire/ops_signed.ts";
import { type HandlerFamily } from "./handler.ts";
import { unavailableOnEtcdError } from "../etcd/etcd_errors.ts";

/** Publish bodies (part lists) one instance holds in memory at once, over all connections. */
export const MAX_PUBLISH_BUFFERED_BYTES = 2 * MAX_PUBLISH_BODY_BYTES;

/** Runs a change; etcd out of reach (or without quorum) becomes UNAVAILABLE. */
const _changing = unavailableOnEtcdError;

export const SIGNED_HANDLERS: HandlerFamily<"file.publish" | "file.delete" | "file.rename"> = {
  "file.publish": async (instance, { request, reader, bodyLength, reply }) => {
    if (bodyLength > MAX_PUBLISH_BODY_BYTES) {
      throw new ProtocolError(
        "BODY_TOO_LARGE",
        `A part list may not exceed ${MAX_PUBLISH_BODY_BYTES} bytes`,
      );
    }
    // Bodies are buffered (a part list is parsed whole) only once the
    // signature checked out; all connections together get one budget.
    let reserved = 0;
    const readBody = () => {
      if (instance.publishBuffered + bodyLength > MAX_PUBLISH_BUFFERED_BYTES) {
        throw new ProtocolError("BUSY", "Too many part lists being published; try again");
      }
      instance.publishBuffered += reserved = bodyLength;
      return reader.readBodyBytes(MAX_PUBLISH_BODY_BYTES);
    };
    try {
      await reply(
        await _changing(async () => (await instance.mutations()).publish(request, readBody)),
      );
    } finally {
      instance.publishBuffered -= reserved;
    }
  },
  "file.delete": async (instance, { request, reply }) => {
    await reply(await _changing(async () => (await instance.mutations()).remove(request)));
  },
  "file.rename": async (instance, { request, reply }) => {
    await reply(await _changing(async () => (await instance.mutations()).rename(request)));
  },
};
