/**
 * The server's handler table: one handler per op of the wire's op table
 * (lib/wire/ops.ts), gathered from the family files. The `satisfies` below is
 * the exhaustive check: an op added to the wire without a handler here, or a
 * handler for an op the wire does not know, fails the type check.
 */
import { type RequestOp } from "../wire/ops.ts";
import { type Handler } from "./handler.ts";
import { CONTROL_HANDLERS } from "./handlers_control.ts";
import { FILE_HANDLERS } from "./handlers_files.ts";
import { PART_HANDLERS } from "./handlers_parts.ts";
import { REPAIR_HANDLERS } from "./handlers_repair.ts";
import { SIGNED_HANDLERS } from "./handlers_signed.ts";

export const HANDLERS = {
  ...CONTROL_HANDLERS,
  ...FILE_HANDLERS,
  ...PART_HANDLERS,
  ...SIGNED_HANDLERS,
  ...REPAIR_HANDLERS,
} satisfies { [K in RequestOp]: Handler<K> };
