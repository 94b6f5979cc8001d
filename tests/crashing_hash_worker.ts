/// <reference lib="deno.worker" />
/**
 * A hash worker for tests (unit_hash_pool.test.ts): the real one, except that
 * a range of a path ending in "crash" throws outside any handler, which ends
 * the worker the way running out of memory would.
 */
import type { HashRequest } from "../lib/hash/hash_pool.ts";
import "../lib/hash/hash_worker.ts";

// The real handler is an arrow function: it needs no `this`.
const hash = self.onmessage as unknown as (event: MessageEvent<HashRequest>) => void;
self.onmessage = (event: MessageEvent<HashRequest>) => {
  if ("range" in event.data && event.data.range.path.endsWith("crash")) {
    throw new Error("the worker crashed");
  }
  hash(event);
};
