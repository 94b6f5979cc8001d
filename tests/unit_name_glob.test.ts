/** nameMatcher(): `*` and `?` on whole names, every other character literal. */
import assert from "node:assert/strict";
import { nameMatcher } from "../lib/base/name_glob.ts";

Deno.test("nameMatcher: * is any run, ? one character, the rest literal, whole names only", () => {
  const match = nameMatcher(["*.jpg", "log-2026-??"]);
  assert.ok(match("a.jpg"));
  assert.ok(match(".jpg"));
  assert.ok(match("log-2026-12"));
  assert.ok(!match("a.jpg.bak"));
  assert.ok(!match("log-2026-1"));
  assert.ok(!match("log-2026-123"));
  // Regular-expression characters stand for themselves.
  const odd = nameMatcher(["a.(b)[c]{2}|d+$^\\e"]);
  assert.ok(odd("a.(b)[c]{2}|d+$^\\e"));
  assert.ok(!odd("aX(b)[c]{2}|d+$^\\e"));
  // "?" is one character, not one UTF-16 unit.
  assert.ok(nameMatcher(["?.txt"])("😀.txt"));
  assert.ok(nameMatcher(["*"])("anything at all"));
  assert.ok(!nameMatcher([])("a"));
});
