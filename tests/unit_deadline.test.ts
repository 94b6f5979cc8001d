/**
 * Unit tests of lib/base/deadline.ts (deadlines on one chain of
 * AbortSignal.timeout signals), and of the rate limiter that waits on them.
 */
import assert from "node:assert/strict";
import {
  deadline,
  deadlineTicks,
  every,
  pendingDeadlines,
  raceDeadline,
} from "../lib/base/deadline.ts";
import { RateLimiter } from "../lib/base/rate_limiter.ts";

function _after(ms: number): Promise<void> {
  return new Promise((resolve) => deadline(ms, resolve));
}

Deno.test("deadline() fires once, not before its time, and in order of due time", async () => {
  const fired: string[] = [];
  const start = performance.now();
  const times: Record<string, number> = {};
  const done = new Promise<void>((resolve) => {
    deadline(120, () => {
      fired.push("late");
      times.late = performance.now() - start;
      resolve();
    });
    // Added later but due earlier: the chain must not wait for the later one.
    deadline(30, () => {
      fired.push("early");
      times.early = performance.now() - start;
    });
  });
  await done;
  assert.deepEqual(fired, ["early", "late"]);
  assert.ok(times.early! >= 29, `fired early: ${times.early} ms`);
  assert.ok(times.late! >= 119, `fired early: ${times.late} ms`);
  await _after(20);
  assert.deepEqual(fired, ["early", "late"], "each fires once");
  assert.equal(pendingDeadlines(), 0);
});

Deno.test("a cancelled deadline never fires; the others still do", async () => {
  let cancelledFired = false;
  const cancel = deadline(20, () => cancelledFired = true);
  cancel();
  cancel(); // twice is harmless
  await _after(60);
  assert.equal(cancelledFired, false);
  assert.equal(pendingDeadlines(), 0);
});

Deno.test("a deadline whose action throws does not stop the ones due with it", async () => {
  const errors: unknown[] = [];
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    errors.push(event.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    let second = false;
    deadline(10, () => {
      throw new Error("boom");
    });
    deadline(10, () => second = true);
    await _after(50);
    assert.equal(second, true);
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as Error).message, "boom");
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("every() repeats until stopped", async () => {
  let runs = 0;
  const stop = every(15, () => runs++);
  await _after(100);
  stop();
  const seen = runs;
  assert.ok(seen >= 3, `ran ${seen} times in 100 ms at 15 ms`);
  await _after(60);
  assert.equal(runs, seen, "no run after stop");
  assert.equal(pendingDeadlines(), 0);
});

Deno.test("a deadline further off than a timer can wait (2^31 ms) neither fires nor spins", async () => {
  let fired = false;
  const before = deadlineTicks();
  const cancel = deadline(2 ** 31 + 5_000, () => fired = true);
  // Armed with the delay as asked, the signal fired at once and re-armed
  // itself every few milliseconds. (Waited with setTimeout: a nearer deadline
  // would take over the chain and hide that.)
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(fired, false);
  assert.ok(deadlineTicks() - before <= 2, `${deadlineTicks() - before} ticks in 100 ms`);
  cancel();
});

Deno.test("raceDeadline() settles as its promise when in time; else rejects with onExpire's error, leaving no deadline", async () => {
  const before = pendingDeadlines();
  let expired = 0;
  const onExpire = () => {
    expired++;
    return new Error("too slow");
  };
  assert.equal(await raceDeadline(_after(5).then(() => "done"), 500, onExpire), "done");
  await assert.rejects(raceDeadline(Promise.reject(new Error("own")), 500, onExpire), /own/);
  const started = performance.now();
  await assert.rejects(raceDeadline(_after(1_000), 40, onExpire), /too slow/);
  assert.ok(performance.now() - started < 900, "waited for the promise");
  assert.equal(expired, 1);
  assert.equal(pendingDeadlines(), before + 1, "only the slow promise's own deadline is left");
  await _after(1_000);
});

Deno.test("RateLimiter.take() ends its wait as soon as the signal aborts, leaving no deadline", async () => {
  // 1 KiB/s: 64 KiB more than the burst would take a minute.
  const limiter = new RateLimiter(1024);
  const controller = new AbortController();
  const started = performance.now();
  deadline(50, () => controller.abort(new DOMException("Interrupted", "AbortError")));
  await assert.rejects(limiter.take(limiter.burstBytes + 64 * 1024, controller.signal), {
    name: "AbortError",
  });
  const waited = performance.now() - started;
  assert.ok(waited < 2_000, `waited ${waited} ms`);
  assert.equal(pendingDeadlines(), 0);
  // Aborted already: no wait at all.
  await assert.rejects(limiter.take(1024, controller.signal), { name: "AbortError" });
  // Without a signal, a take within the rate passes.
  await new RateLimiter(1024 * 1024).take(1024);
});
