/**
 * A cluster's certificate directory (`fts certs`): one CA, made the first time
 * and reused after, and a certificate and key per host that the CA signs for
 * the host's address, for `--tls-cert`, `--tls-key` and `--tls-ca`. Keys are
 * written with mode 0600 and every file atomically, so a run cut short never
 * leaves half a key; an existing host's certificate and key are replaced.
 */
import { join } from "../base/paths.ts";
import { exists, writeFileAtomic } from "../base/fs_util.ts";
import type { HostAddress } from "../wire/host_address.ts";
import {
  type CertificateAuthority,
  issueHostCertificate,
  loadCertificateAuthority,
  makeCertificateAuthority,
} from "../wire/x509.ts";

/** A cluster CA lives long: replacing it means re-issuing every host's certificate. */
export const CA_VALIDITY_DAYS = 10 * 365;
/** Host certificates are cheap to re-issue (run `fts certs` again). */
export const HOST_VALIDITY_DAYS = 2 * 365;
/** Private keys: readable by their owner only. */
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;

export const CA_CERT_FILE = "ca.pem";
export const CA_KEY_FILE = "ca.key";

/** What a run wrote or reused. */
export interface ClusterCertificates {
  caCert: string;
  caKey: string;
  caCreated: boolean;
  hosts: { address: string; cert: string; key: string; replaced: boolean }[];
}

/** The certificate and key files of host `address` in `dir`. */
export function hostCertificatePaths(dir: string, address: string) {
  return { cert: join(dir, `host-${address}.pem`), key: join(dir, `host-${address}.key`) };
}

async function _write(path: string, text: string, mode: number): Promise<void> {
  try {
    await writeFileAtomic(path, text, { mode });
    // The process's umask may have narrowed the mode further: say it exactly.
    await Deno.chmod(path, mode);
  } catch (cause) {
    throw new Error(`Cannot write ${path}: ${(cause as Error).message}`, { cause });
  }
}

async function _caOf(dir: string): Promise<{ ca: CertificateAuthority; created: boolean }> {
  const certPath = join(dir, CA_CERT_FILE);
  const keyPath = join(dir, CA_KEY_FILE);
  const [haveCert, haveKey] = await Promise.all([exists(certPath), exists(keyPath)]);
  if (haveCert !== haveKey) {
    throw new Error(
      `${dir} holds ${haveCert ? CA_CERT_FILE : CA_KEY_FILE} without ${
        haveCert ? CA_KEY_FILE : CA_CERT_FILE
      }: restore the missing one, or move both away to make a new CA`,
    );
  }
  let created = false;
  if (!haveCert) {
    const id = crypto.randomUUID().slice(0, 8);
    const made = await makeCertificateAuthority(`fts cluster CA ${id}`, CA_VALIDITY_DAYS);
    // The key first: a cut-short run leaves a key without a certificate, never the reverse.
    await _write(keyPath, made.keyPem, KEY_MODE);
    await _write(certPath, made.certPem, CERT_MODE);
    created = true;
  }
  const [certPem, keyPem] = await Promise.all([
    Deno.readTextFile(certPath),
    Deno.readTextFile(keyPath),
  ]);
  try {
    return { ca: await loadCertificateAuthority(certPem, keyPem), created };
  } catch (cause) {
    throw new Error(`Cannot use the CA in ${dir}: ${(cause as Error).message}`, { cause });
  }
}

/** Makes (or reuses) the CA in `dir` and issues a certificate for every host. */
export async function makeClusterCertificates(
  dir: string,
  hosts: HostAddress[],
): Promise<ClusterCertificates> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (cause) {
    throw new Error(`Cannot create the certificate directory ${dir}: ${(cause as Error).message}`, {
      cause,
    });
  }
  const { ca, created } = await _caOf(dir);
  const result: ClusterCertificates = {
    caCert: join(dir, CA_CERT_FILE),
    caKey: join(dir, CA_KEY_FILE),
    caCreated: created,
    hosts: [],
  };
  for (const host of hosts) {
    const paths = hostCertificatePaths(dir, host.text);
    const replaced = await exists(paths.cert);
    const issued = await issueHostCertificate(ca, host, HOST_VALIDITY_DAYS);
    await _write(paths.key, issued.keyPem, KEY_MODE);
    await _write(paths.cert, issued.certPem, CERT_MODE);
    result.hosts.push({ address: host.text, ...paths, replaced });
  }
  return result;
}
