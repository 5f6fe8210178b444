/**
 * tls_client_auth (RFC 8705 section 2.1): a client is registered with exactly one
 * expected identity value (section 2.1.2 metadata), and the verified TLS client
 * certificate must carry it: the subject DN, or one subjectAltName entry of the named type.
 */
import { BlockList, isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';

/** RFC 8705 section 2.1.2: tls_client_auth_subject_dn, _san_dns, _san_uri, _san_ip, _san_email. */
export type CertificateIdentityKind = 'subject_dn' | 'san_dns' | 'san_uri' | 'san_ip' | 'san_email';

export interface ExpectedCertificateIdentity {
  readonly kind: CertificateIdentityKind;
  readonly value: string;
}

export function certificateHasIdentity(certificate: X509Certificate, expected: ExpectedCertificateIdentity): boolean {
  switch (expected.kind) {
    case 'subject_dn':
      return subjectDnMatches(certificate, expected.value);
    case 'san_dns':
      // RFC 4343: DNS names compare case-insensitively.
      return sanValues(certificate, 'DNS').some((v) => v.toLowerCase() === expected.value.toLowerCase());
    case 'san_uri':
      // RFC 3986 section 6.2.1: simple string comparison.
      return sanValues(certificate, 'URI').includes(expected.value);
    case 'san_email':
      return sanValues(certificate, 'email').includes(expected.value);
    case 'san_ip':
      return sanValues(certificate, 'IP Address').some((v) => sameIpAddress(v, expected.value));
  }
}

/** A registration value is usable: a parseable DN, an IP address, or a non-empty string. */
export function isValidIdentityValue(kind: CertificateIdentityKind, value: string): boolean {
  if (value.trim() === '') return false;
  if (kind === 'san_ip') return isIP(value) !== 0;
  if (kind === 'subject_dn') return parseDn(value) !== undefined;
  return true;
}

/**
 * RFC 8705 section 2.1.2 registers the DN in RFC 4514 string form (most specific RDN
 * first, comma-separated). Node prints the subject one RDN per line in encoding order
 * with RFC 2253 escaping, so reversing the lines gives the same representation. Types
 * and values compare case-insensitively: X.520 naming attributes use caseIgnoreMatch.
 */
function subjectDnMatches(certificate: X509Certificate, expected: string): boolean {
  const actual = parseDn(certificate.subject.split('\n').reverse().join(','));
  const wanted = parseDn(expected);
  if (actual === undefined || wanted === undefined || actual.length !== wanted.length) return false;
  return actual.every((rdn, i) => rdn === wanted[i]);
}

/** RDNs in normalised form (TYPE=value, lower-cased value), or undefined when malformed. */
function parseDn(dn: string): string[] | undefined {
  const rdns: string[] = [];
  let current = '';
  for (let i = 0; i < dn.length; i++) {
    const c = dn[i]!;
    if (c === '\\' && i + 1 < dn.length) {
      current += c + dn[++i]!;
    } else if (c === ',') {
      rdns.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  rdns.push(current);
  const normalised: string[] = [];
  for (const rdn of rdns) {
    const eq = rdn.indexOf('=');
    if (eq <= 0) return undefined;
    normalised.push(`${rdn.slice(0, eq).trim().toUpperCase()}=${rdn.slice(eq + 1).trim().toLowerCase()}`);
  }
  return normalised;
}

/**
 * subjectAltName entries of one type from node's `TYPE:value, TYPE:value` string.
 * Values holding a comma or quote are JSON-quoted by node (since the CVE-2021-44532
 * fix), so a quoted value is decoded and a name cannot smuggle in a second entry.
 */
function sanValues(certificate: X509Certificate, type: string): string[] {
  const text = certificate.subjectAltName;
  if (text === undefined) return [];
  const entry = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/y;
  const values: string[] = [];
  let match: RegExpExecArray | null;
  while (entry.lastIndex < text.length && (match = entry.exec(text)) !== null) {
    const [, entryType = '', raw = ''] = match;
    if (entryType !== type) continue;
    if (!raw.startsWith('"')) {
      values.push(raw);
      continue;
    }
    try {
      values.push(JSON.parse(raw) as string);
    } catch {
      // An undecodable entry matches nothing.
    }
  }
  return values;
}

/** Node prints IPv6 SANs uncompressed (0:0:...:1); compare addresses, not spellings. */
function sameIpAddress(actual: string, expected: string): boolean {
  const family = isIP(expected);
  if (family === 0 || isIP(actual) !== family) return false;
  const list = new BlockList();
  const type = family === 4 ? 'ipv4' : 'ipv6';
  list.addAddress(expected, type);
  return list.check(actual, type);
}
