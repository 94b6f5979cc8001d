/**
 * Arguments that are not UTF-8. Deno hands a program its arguments as
 * strings, replacing each byte that is not UTF-8 with U+FFFD: a path named
 * in Latin-1 (`café` written as `caf\xe9`) becomes another path, which fts
 * would then fail to find, or worse create (a DEST_DIR) and write into.
 * Where the kernel shows the raw command line (/proc/self/cmdline on
 * Linux), an argument holding U+FFFD is checked against it, so that a real
 * U+FFFD typed in UTF-8 is still accepted; elsewhere it is refused.
 */

const _REPLACEMENT = "\uFFFD";

/** The first of `args` that was not UTF-8 on the command line, as Deno shows it. */
export function firstNonUtf8Argument(
  args: readonly string[],
  rawCommandLine: () => Uint8Array = () => Deno.readFileSync("/proc/self/cmdline"),
): string | undefined {
  const suspects = args.filter((arg) => arg.includes(_REPLACEMENT));
  if (suspects.length === 0) return undefined;
  let raw: Uint8Array;
  try {
    raw = rawCommandLine();
  } catch {
    return suspects[0];
  }
  const strict = new TextDecoder("utf-8", { fatal: true });
  const lossy = new TextDecoder("utf-8");
  let start = 0;
  for (let end = raw.indexOf(0); end >= 0; start = end + 1, end = raw.indexOf(0, start)) {
    const bytes = raw.subarray(start, end);
    try {
      strict.decode(bytes);
    } catch {
      const shown = lossy.decode(bytes);
      if (suspects.includes(shown)) return shown;
    }
  }
  return undefined;
}
