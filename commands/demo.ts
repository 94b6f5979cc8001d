import { boolFlag, parseFlags, sizeFlag } from "../lib/cli/flags.ts";
import { MIN_PART_BYTES } from "../lib/state/config.ts";
import { DEFAULT_DEMO, runDemo } from "../lib/ops/demo.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { colorEnabled } from "../lib/base/terminal.ts";
import { onStopSignal } from "../lib/base/stop_signal.ts";

export const USAGE = "fts demo [--size 24MiB] [--keep]";

export const EXAMPLE = [
  "deno task demo    # the same as ./fts demo: about 15 s, cleans up after itself",
].join("\n");

/** The demo's file stays small: it must run in well under a minute on a laptop. */
const MAX_DEMO_BYTES = 256 * 1024 * 1024;
const MIN_DEMO_BYTES = 8 * 1024 * 1024;

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, { size: { type: "string" }, keep: { type: "boolean" } });
  if (flags.positionals.length > 0) throw new UsageError(`Unexpected argument; usage: ${USAGE}`);
  const sizeBytes = sizeFlag(flags, "size") ?? DEFAULT_DEMO.sizeBytes;
  // Smaller files are fetched before the tour can kill an instance mid-part or interrupt a fetch.
  if (sizeBytes < MIN_DEMO_BYTES || sizeBytes > MAX_DEMO_BYTES) {
    throw new UsageError(`--size must be 8MiB..256MiB, got ${sizeBytes} bytes`);
  }
  const controller = new AbortController();
  // Ctrl-C reaches the demo's children too; the demo still stops them and removes its files.
  const onSignal = () => controller.abort(new DOMException("Interrupted", "AbortError"));
  const stopListening = onStopSignal(onSignal);
  try {
    await runDemo({
      ...DEFAULT_DEMO,
      sizeBytes,
      // Parts stay a twelfth of the file or so, so a kill lands mid-transfer.
      partSize: Math.max(
        MIN_PART_BYTES,
        Math.min(DEFAULT_DEMO.partSize, _roundDown(sizeBytes / 12)),
      ),
      keep: boolFlag(flags, "keep"),
      color: colorEnabled(Deno.stdout),
      signal: controller.signal,
      say: (line) => console.log(line),
    });
    return 0;
  } finally {
    stopListening();
  }
}

/** A power of two at most `n`: part sizes people recognise. */
function _roundDown(n: number): number {
  return 2 ** Math.floor(Math.log2(n));
}
