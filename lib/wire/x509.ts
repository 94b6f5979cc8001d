/**
 * X.509 certificates for a cluster's TLS, made with WebCrypto (ECDSA P-256,
 * SHA-256) and the DER encoder beside: a CA certificate, and host
 * certificates it signs whose subject-alternative name is the host's address.
 * The CA is separate from the hosts' certificates because Deno's TLS refuses
 * a CA certificate presented by a server ("CaUsedAsEndEntity"), although
 * openssl accepts a self-signed server certificate as its own CA.
 */
import {
  contextTag,
  derBitString,
  derBoolean,
  derElement,
  derNamedBits,
  derOctetString,
  derOid,
  derSequence,
  derSet,
  derSmallInteger,
  derTime,
  derUnsignedInteger,
  derUtf8String,
  readDerElements,
} from "./der.ts";
import type { HostAddress } from "./host_address.ts";

const _EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
const _SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** Key usage bits (RFC 5280 4.2.1.3). */
const KEY_USAGE = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;
/** Serial numbers: random, positive, at most 20 bytes (RFC 5280 4.1.2.2). */
const SERIAL_BYTES = 16;
/** notBefore this far in the past, so a host whose clock lags a little accepts a new certificate. */
const BACKDATE_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/** A certificate and its private key, both PEM. */
export interface PemPair {
  certPem: string;
  keyPem: string;
}

/** A CA ready to sign: its key, and the subject name and key id its certificates name as issuer. */
export interface CertificateAuthority {
  privateKey: CryptoKey;
  subject: Uint8Array;
  keyId: Uint8Array;
  certPem: string;
}

/** PEM text of DER bytes under `label` ("CERTIFICATE", "PRIVATE KEY"), lines of 64. */
export function pemEncode(label: string, der: Uint8Array): string {
  const base64 = btoa(String.fromCharCode(...der));
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** The DER bytes of the first `label` block in PEM text. */
export function pemDecode(label: string, pem: string): Uint8Array<ArrayBuffer> {
  const match = pem.match(new RegExp(`-----BEGIN ${label}-----([^-]*)-----END ${label}-----`));
  if (!match) throw new TypeError(`No PEM ${label} block found`);
  const binary = atob(match[1]!.replace(/\s+/g, ""));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function _name(commonName: string): Uint8Array<ArrayBuffer> {
  const rdn = (oid: string, value: string) =>
    derSet(derSequence(derOid(oid), derUtf8String(value)));
  return derSequence(rdn(OID.organization, "fts"), rdn(OID.commonName, commonName));
}

function _extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array<ArrayBuffer> {
  return derSequence(
    derOid(oid),
    ...(critical ? [derBoolean(true)] : []),
    derOctetString(value),
  );
}

/** The subject key identifier: SHA-1 of the public key's bits (RFC 5280 4.2.1.2, method 1). */
async function _keyId(publicKey: CryptoKey): Promise<Uint8Array> {
  const point = new Uint8Array(await crypto.subtle.exportKey("raw", publicKey));
  return new Uint8Array(await crypto.subtle.digest("SHA-1", point));
}

/** WebCrypto's ECDSA signature (r || s) as the DER SEQUENCE X.509 carries. */
function _derSignature(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = raw.length / 2;
  return derSequence(
    derUnsignedInteger(raw.subarray(0, half)),
    derUnsignedInteger(raw.subarray(half)),
  );
}

function _subjectAltName(host: HostAddress): Uint8Array<ArrayBuffer> {
  return host.kind === "ip"
    ? derElement(contextTag(7, false), host.bytes)
    : derElement(contextTag(2, false), new TextEncoder().encode(host.text));
}

async function _sign(options: {
  subject: Uint8Array;
  issuer: Uint8Array;
  publicKey: CryptoKey;
  signingKey: CryptoKey;
  validityDays: number;
  extensions: Uint8Array[];
}): Promise<Uint8Array> {
  const serial = crypto.getRandomValues(new Uint8Array(SERIAL_BYTES));
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const now = Date.now();
  const algorithm = derSequence(derOid(OID.ecdsaWithSha256));
  const tbs = derSequence(
    derElement(contextTag(0, true), derSmallInteger(2)), // v3
    derUnsignedInteger(serial),
    algorithm,
    options.issuer,
    derSequence(
      derTime(new Date(now - BACKDATE_MS)),
      derTime(new Date(now + options.validityDays * DAY_MS)),
    ),
    options.subject,
    new Uint8Array(await crypto.subtle.exportKey("spki", options.publicKey)),
    derElement(contextTag(3, true), derSequence(...options.extensions)),
  );
  const raw = new Uint8Array(await crypto.subtle.sign(_SIGN, options.signingKey, tbs));
  return derSequence(tbs, algorithm, derBitString(_derSignature(raw)));
}

async function _pkcs8Pem(key: CryptoKey): Promise<string> {
  return pemEncode("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
}

/** A new CA: a self-signed certificate that may sign host certificates, and its key. */
export async function makeCertificateAuthority(
  commonName: string,
  validityDays: number,
): Promise<PemPair> {
  const keys = await crypto.subtle.generateKey(_EC_KEY, true, ["sign", "verify"]);
  const subject = _name(commonName);
  const keyId = await _keyId(keys.publicKey);
  const der = await _sign({
    subject,
    issuer: subject,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    validityDays,
    extensions: [
      // CA, and only of end entities (path length 0).
      _extension(OID.basicConstraints, true, derSequence(derBoolean(true), derSmallInteger(0))),
      _extension(
        OID.keyUsage,
        true,
        derNamedBits([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]),
      ),
      _extension(OID.subjectKeyIdentifier, false, derOctetString(keyId)),
    ],
  });
  return { certPem: pemEncode("CERTIFICATE", der), keyPem: await _pkcs8Pem(keys.privateKey) };
}

/**
 * A CA from its PEM certificate and key, as makeCertificateAuthority() wrote
 * them; throws TypeError when either is not what it should be or the key is
 * not the certificate's.
 */
export async function loadCertificateAuthority(
  certPem: string,
  keyPem: string,
): Promise<CertificateAuthority> {
  const [certificate] = readDerElements(pemDecode("CERTIFICATE", certPem));
  const [tbs] = readDerElements(certificate?.contents ?? new Uint8Array(0));
  const fields = readDerElements(tbs?.contents ?? new Uint8Array(0));
  // version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
  const subject = fields[5];
  const spki = fields[6];
  if (fields[0]?.tag !== contextTag(0, true) || subject === undefined || spki === undefined) {
    throw new TypeError("The CA certificate is not an X.509 v3 certificate");
  }
  const publicKey = await crypto.subtle.importKey("spki", spki.encoded, _EC_KEY, true, ["verify"])
    .catch((cause) => {
      throw new TypeError("The CA certificate's key is not an ECDSA P-256 key", { cause });
    });
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    pemDecode("PRIVATE KEY", keyPem),
    _EC_KEY,
    false,
    ["sign"],
  ).catch((cause) => {
    throw new TypeError("The CA key is not a PKCS#8 ECDSA P-256 key", { cause });
  });
  const probe = new TextEncoder().encode("fts certs: does this key belong to this certificate?");
  const signature = await crypto.subtle.sign(_SIGN, privateKey, probe);
  if (!(await crypto.subtle.verify(_SIGN, publicKey, signature, probe))) {
    throw new TypeError("The CA key does not belong to the CA certificate");
  }
  return { privateKey, subject: subject.encoded, keyId: await _keyId(publicKey), certPem };
}

/** A new key and a certificate `ca` signs for `host`, for serving (and connecting) over TLS. */
export async function issueHostCertificate(
  ca: CertificateAuthority,
  host: HostAddress,
  validityDays: number,
): Promise<PemPair> {
  const keys = await crypto.subtle.generateKey(_EC_KEY, true, ["sign", "verify"]);
  const der = await _sign({
    subject: _name(host.text),
    issuer: ca.subject,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    validityDays,
    extensions: [
      _extension(OID.basicConstraints, true, derSequence()),
      _extension(OID.keyUsage, true, derNamedBits([KEY_USAGE.digitalSignature])),
      _extension(
        OID.extKeyUsage,
        false,
        derSequence(derOid(OID.serverAuth), derOid(OID.clientAuth)),
      ),
      _extension(OID.subjectAltName, false, derSequence(_subjectAltName(host))),
      _extension(OID.subjectKeyIdentifier, false, derOctetString(await _keyId(keys.publicKey))),
      _extension(
        OID.authorityKeyIdentifier,
        false,
        derSequence(derElement(contextTag(0, false), ca.keyId)),
      ),
    ],
  });
  return {
    certPem: pemEncode("CERTIFICATE", der),
    keyPem: await _pkcs8Pem(keys.privateKey),
  };
}
