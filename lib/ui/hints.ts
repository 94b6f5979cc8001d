/**
 * What a person can do about an error: main.ts adds this to the one line it
 * prints, unless the message already says it. Found by looking down the
 * cause chain for a condition with a known remedy.
 */
import { ProtocolError } from "../wire/errors.ts";
import { OutputError } from "../base/output_error.ts";
import { isDamagedManifestError } from "../state/manifest_index.ts";

type _Rule = { test: (error: unknown) => boolean; hint: string };

function _osCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function _protocolCode(code: string): (error: unknown) => boolean {
  return (error) => error instanceof ProtocolError && error.code === code;
}

const _RULES: _Rule[] = [
  {
    test: (error) =>
      _osCode(error) === "ENOSPC" ||
      (error instanceof Error && /No space left on device/.test(error.message)),
    hint:
      "the disk is full: free some space or choose another destination, then run the same command again (it resumes)",
  },
  {
    test: (error) => _osCode(error) === "EDQUOT",
    hint: "your disk quota is used up: free some space, then run the same command again",
  },
  {
    test: (error) =>
      error instanceof Deno.errors.PermissionDenied || _osCode(error) === "EACCES" ||
      _osCode(error) === "EPERM",
    hint: "no permission: check who owns that path, or choose another one",
  },
  {
    test: isDamagedManifestError,
    hint:
      "the cluster's manifest (manifest.json in the data directory) is damaged: restore it from a backup (fts repair does not rebuild it)",
  },
  {
    // Files fts preload stored: their owner is the operator, whose key the cluster's host holds.
    test: (error) =>
      _protocolCode("NOT_YOURS")(error) && /belongs to operator\b/.test((error as Error).message),
    hint:
      "it is the operator's (fts preload stored it): pass --operator, on the cluster's host (or one holding its operator_identity.json)",
  },
  {
    test: _protocolCode("NOT_YOURS"),
    hint:
      "only the file's owner may change it: act as the owner (--identity FILE), or ask them; fts ls shows owners",
  },
  {
    test: _protocolCode("UNAUTHORIZED"),
    hint: "the request's signature or time was not accepted: check your identity file and clock",
  },
  {
    // mv has no --replace: the name must be freed first.
    test: (error) =>
      _protocolCode("ALREADY_EXISTS")(error) && /^Cannot rename\b/.test((error as Error).message),
    hint: "that name is taken: pick another one, or if that file is yours fts rm it first",
  },
  {
    test: _protocolCode("ALREADY_EXISTS"),
    hint:
      "that name is taken: pick another one, or if that file is yours upload with --replace (or fts rm it first)",
  },
];

/** A short remedy for `error` (checked down its cause chain), or undefined when none is known. */
export function actionHint(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    // Its message says where the trouble is; a full disk under it is not the destination's.
    if (current instanceof OutputError) return undefined;
    for (const rule of _RULES) if (rule.test(current)) return rule.hint;
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

/**
 * The one line a person sees: the message, then the remedy unless the
 * message already says what to do.
 */
export function errorLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const hint = actionHint(error);
  if (hint === undefined || _saysWhatToDo(message)) return message;
  return `${message}; ${hint}`;
}

function _saysWhatToDo(message: string): boolean {
  return /; (?:pass|start|free|choose|run|use|act|check|pick|sign)\b|\bdid you mean\b/i.test(
    message,
  );
}
