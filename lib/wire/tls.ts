/**
 * Optional TLS for every connection to an instance. Instances load a PEM
 * certificate and key (`--tls-cert`, `--tls-key`); clients load the CA that
 * signed them (`--tls-ca` or FTS_TLS_CA) and refuse any other certificate.
 */
import { deadline } from "../base/deadline.ts";
import { UsageError } from "./errors.ts";

/** What an instance needs to serve TLS: PEM text, not paths. */
export interface TlsServerOptions {
  cert: string;
  key: string;
}

/** What a client needs to speak TLS: the CA certificates (PEM) it trusts. */
export interface TlsClientOptions {
  caCerts: string[];
}

/** The environment variable a client reads when no `--tls-ca` is given. */
export const TLS_CA_ENV = "FTS_TLS_CA";

async function _readPem(path: string, what: string, marker: RegExp): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (cause) {
    throw new UsageError(`Cannot read the TLS ${what} ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (!marker.test(text)) throw new UsageError(`${path} is not a PEM ${what}`);
  return text;
}

/** Loads `--tls-cert` and `--tls-key`; undefined when neither is given. */
export async function loadTlsServerOptions(
  certPath: string | undefined,
  keyPath: string | undefined,
): Promise<TlsServerOptions | undefined> {
  if (certPath === undefined && keyPath === undefined) return undefined;
  if (certPath === undefined || keyPath === undefined) {
    throw new UsageError("--tls-cert and --tls-key must be given together");
  }
  const options = {
    cert: await _readPem(certPath, "certificate", /-----BEGIN CERTIFICATE-----/),
    key: await _readPem(keyPath, "key", /-----BEGIN [A-Z ]*PRIVATE KEY-----/),
  };
  // A key that is not the certificate's fails only when a listener is made:
  // said here, once, rather than as "cannot listen" by every instance.
  try {
    Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...options }).close();
  } catch (cause) {
    if (cause instanceof Deno.errors.AddrNotAvailable) return options;
    throw new UsageError(
      `The TLS key ${keyPath} does not go with the certificate ${certPath}: ${
        (cause as Error).message
      }`,
      { cause },
    );
  }
  return options;
}

/** Loads the CA from `--tls-ca`, else FTS_TLS_CA; undefined means plain TCP. */
export async function loadTlsClientOptions(
  caPath: string | undefined,
): Promise<TlsClientOptions | undefined> {
  const path = caPath ?? Deno.env.get(TLS_CA_ENV);
  if (path === undefined || path === "") return undefined;
  return { caCerts: [await _readPem(path, "CA certificate", /-----BEGIN CERTIFICATE-----/)] };
}

/** A connection that failed because of TLS: the wrong CA, or one side not speaking TLS. */
export class TlsError extends Error {
  /** The handshake took too long: the instance may be stuck, not misconfigured. */
  readonly timedOut: boolean;
  constructor(message: string, options?: ErrorOptions & { timedOut?: boolean }) {
    super(message, options);
    this.name = "TlsError";
    this.timedOut = options?.timedOut ?? false;
  }
}

/**
 * The TLS failure to report when no server could be used, if any: an instance
 * that is up but speaks TLS differently (say that, not "is the cluster
 * up?"), else a handshake that timed out on every server.
 */
export function preferredTlsError(errors: TlsError[], servers: number): TlsError | undefined {
  return errors.find((error) => !error.timedOut) ??
    (errors.length === servers ? errors[0] : undefined);
}

let _default: { path: string; options: TlsClientOptions } | undefined;

/**
 * The TLS a client connection uses when its caller names none: the CA that
 * FTS_TLS_CA names (read once), else none. This covers every command that
 * talks to instances, including those without a --tls-ca flag.
 */
export function defaultTlsClientOptions(): TlsClientOptions | undefined {
  const path = Deno.env.get(TLS_CA_ENV);
  if (path === undefined || path === "") return undefined;
  if (_default?.path !== path) {
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (cause) {
      throw new Error(`Cannot read the TLS CA certificate ${path} named by ${TLS_CA_ENV}`, {
        cause,
      });
    }
    _default = { path, options: { caCerts: [text] } };
  }
  return _default.options;
}

/**
 * Upgrades a connected socket to TLS and completes the handshake within
 * `timeoutMs`, with an error that says what to check.
 */
export async function startTls(
  conn: Deno.TcpConn,
  address: string,
  hostname: string,
  options: TlsClientOptions,
  timeoutMs: number,
): Promise<Deno.TlsConn> {
  const tls = await Deno.startTls(conn, { hostname, caCerts: options.caCerts });
  let timedOut = false;
  const cancel = deadline(timeoutMs, () => {
    timedOut = true;
    _closeQuietly(tls);
  });
  try {
    await tls.handshake();
  } catch (cause) {
    _closeQuietly(tls);
    if (timedOut) {
      throw new TlsError(`TLS handshake with ${address} took over ${timeoutMs} ms`, {
        cause,
        timedOut: true,
      });
    }
    const reason = _reason(cause);
    const hint = _NAME_MISMATCH.test(reason)
      ? `the instance's certificate does not name ${hostname}: dial an address it names, or ` +
        `give the instance a certificate for ${hostname} (fts certs --ca DIR --host ${hostname})`
      : /certificate|issuer|name/i.test(reason)
      ? `check that --tls-ca (or ${TLS_CA_ENV}) is the CA that signed the instance's certificate`
      : "is the instance serving TLS (fts serve --tls-cert FILE --tls-key FILE)?";
    throw new TlsError(`TLS handshake with ${address} failed: ${reason}; ${hint}`, { cause });
  } finally {
    cancel();
  }
  return tls;
}

/** rustls's words for a certificate that does not name the address dialled. */
const _NAME_MISMATCH = /not valid for name/i;
/** A handshake with ourselves over loopback that takes longer than this is stuck. */
const _CHECK_TIMEOUT_MS = 5_000;

function _reason(cause: unknown): string {
  return cause instanceof Error ? cause.message.replace(/^\w+: /, "") : String(cause);
}

/**
 * Refuses (a UsageError) a certificate that clients trusting `ca` would not
 * accept from an instance they reach at `host`: one that does not name
 * `host`, one another CA signed, an expired one, a CA's own. The check is a
 * real handshake over loopback, with the verifier every client uses, so that
 * `fts cluster` says so once, before it starts, rather than start instances
 * that no client, healing included, can talk to.
 */
export async function checkServerCertificate(
  server: TlsServerOptions,
  ca: TlsClientOptions,
  host: string,
  paths: { cert: string; ca: string },
): Promise<void> {
  let listener: Deno.TlsListener;
  try {
    listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...server });
  } catch (cause) {
    // No loopback to check over: the instances' own listeners will say what is wrong.
    if (cause instanceof Deno.errors.AddrNotAvailable) return;
    throw cause;
  }
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await conn.handshake();
    } finally {
      _closeQuietly(conn);
    }
  })().catch(() => {});
  let client: Deno.TlsConn | undefined;
  try {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    client = await Deno.startTls(tcp, { hostname: host, caCerts: ca.caCerts });
    await _handshakeWithin(client, _CHECK_TIMEOUT_MS);
  } catch (cause) {
    const reason = _reason(cause);
    const fix = `make one with fts certs --ca DIR --host ${host}`;
    const why = _NAME_MISMATCH.test(reason)
      ? `it does not name ${host}, the address the instances listen on and are dialled at ` +
        `(--host): ${fix}`
      : /expired|notvalidyet/i.test(reason)
      ? `it is out of its validity period (check this host's clock): ${fix}`
      : /unknownissuer/i.test(reason)
      ? `--tls-ca ${paths.ca} is not the CA that signed it: give that CA, or ${fix}`
      : /caused?asendentity/i.test(reason)
      ? `it is a CA's certificate, not a host's: ${fix}`
      : `clients trusting --tls-ca ${paths.ca} would refuse it: ${fix}`;
    throw new UsageError(
      `The TLS certificate ${paths.cert} cannot serve ${host}: ${why} (${reason})`,
      { cause },
    );
  } finally {
    if (client) _closeQuietly(client);
    listener.close();
    await served;
  }
}

async function _handshakeWithin(conn: Deno.TlsConn, timeoutMs: number): Promise<void> {
  const cancel = deadline(timeoutMs, () => _closeQuietly(conn));
  try {
    await conn.handshake();
  } finally {
    cancel();
  }
}

/** True for the first byte of a TLS record (alert or handshake): a TLS server answering plain text. */
export function looksLikeTls(firstByte: number | undefined): boolean {
  return firstByte === 0x15 || firstByte === 0x16;
}

function _closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
