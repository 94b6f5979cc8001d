/**
 * Shell-style patterns on file names, for picking files by name: `*` is any
 * run of characters (none included), `?` is exactly one; every other
 * character stands for itself (no brackets, no escapes: names may hold any
 * of them). A name matches when the whole of it does.
 */

/** A test that is true of a name matching any of `patterns`. */
export function nameMatcher(patterns: readonly string[]): (name: string) => boolean {
  if (patterns.length === 0) return () => false;
  const alternatives = patterns.map((pattern) =>
    Array.from(
      pattern,
      (char) =>
        char === "*"
          ? "[\\s\\S]*"
          : char === "?"
          ? "[\\s\\S]"
          : char.replace(/[.+^${}()|[\]\\]/g, "\\$&"),
    ).join("")
  );
  // "u": "?" is one character, not one UTF-16 unit.
  const regex = new RegExp(`^(?:${alternatives.join("|")})$`, "u");
  return (name) => regex.test(name);
}
