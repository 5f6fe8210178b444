/**
 * Issue X.509 certificates (RFC 5280) with node:crypto: a CA, and leaves signed by it.
 * The sidecar needs this for the forward proxy's interception CA; the demo and the tests
 * use it for workload identities. Keys are ECDSA P-256 (fast to generate, small), and
 * an existing CA may be loaded from PEM files whatever its key type.
 */
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import {
  bitString,
  boolean,
  childrenOf,
  contentsOf,
  explicit,
  implicitPrimitive,
  namedBitString,
  nullValue,
  objectIdentifier,
  octetString,
  sequence,
  set,
  smallInteger,
  tagOf,
  time,
  unsignedInteger,
  utf8String,
} from './der.js';

const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  rsaPss: '1.2.840.113549.1.1.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** keyUsage bit numbers (RFC 5280 4.2.1.3). */
const KEY_USAGE = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

export interface KeyPairPem {
  /** PEM certificate (for a leaf issued here: the leaf only, no chain). */
  readonly certPem: string;
  /** PEM PKCS#8 private key. */
  readonly keyPem: string;
  readonly certificate: X509Certificate;
  readonly privateKey: KeyObject;
}

export interface CertificateAuthority extends KeyPairPem {
  issue(request: LeafRequest): KeyPairPem;
}

export interface LeafRequest {
  readonly commonName: string;
  /** DNS names and IP addresses for subjectAltName; IPs are recognised by shape. */
  readonly subjectAltNames?: readonly string[];
  /** SPIFFE IDs and other URIs for subjectAltName. */
  readonly uris?: readonly string[];
  readonly usage: 'server' | 'client' | 'server+client';
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** Validity when notAfter is absent (default 1 day). */
  readonly validitySeconds?: number;
}

export interface CaRequest {
  readonly commonName: string;
  readonly organization?: string;
  readonly validitySeconds?: number;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** Backdate notBefore a little: clocks in a pod and on the peer are rarely in step. */
const CLOCK_SKEW_MS = 5 * 60_000;

function newKeyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

function name(commonName: string, organization?: string): Buffer {
  const rdns = [set(sequence(objectIdentifier(OID.commonName), utf8String(commonName)))];
  if (organization) rdns.unshift(set(sequence(objectIdentifier(OID.organization), utf8String(organization))));
  return sequence(...rdns);
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return sequence(objectIdentifier(oid), ...(critical ? [boolean(true)] : []), octetString(value));
}

function keyIdentifier(publicKey: KeyObject): Buffer {
  // RFC 7093 section 2 method 1: leftmost 160 bits of SHA-256 over the subjectPublicKey bits;
  // hashing the whole SPKI is equally unique and simpler.
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest().subarray(0, 20);
}

function signatureAlgorithm(key: KeyObject): Buffer {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return sequence(objectIdentifier(OID.ecdsaWithSha256));
    case 'rsa':
      return sequence(objectIdentifier(OID.sha256WithRsa), nullValue());
    default:
      throw new Error(`cannot sign certificates with a ${key.asymmetricKeyType ?? 'unknown'} key; use an EC or RSA CA key`);
  }
}

function subjectAltNames(names: readonly string[], uris: readonly string[]): Buffer {
  const general = names.map((n) => {
    if (isIP(n) === 4) return implicitPrimitive(7, Buffer.from(n.split('.').map(Number)));
    if (isIP(n) === 6) return implicitPrimitive(7, ipv6Bytes(n));
    return implicitPrimitive(2, Buffer.from(n, 'ascii')); // dNSName [2] IMPLICIT IA5String
  });
  for (const uri of uris) general.push(implicitPrimitive(6, Buffer.from(uri, 'ascii')));
  return sequence(...general);
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const parse = (s: string | undefined) => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  const groups = tail === undefined ? left : [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

interface TbsFields {
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  readonly signingKey: KeyObject;
  readonly extensions: readonly Buffer[];
}

function signCertificate(fields: TbsFields): X509Certificate {
  const algorithm = signatureAlgorithm(fields.signingKey);
  // Positive 128-bit serial with the top bit clear (RFC 5280 4.1.2.2: at most 20 octets).
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const tbs = sequence(
    explicit(0, smallInteger(2)), // v3
    unsignedInteger(serial),
    algorithm,
    fields.issuer,
    sequence(time(fields.notBefore), time(fields.notAfter)),
    fields.subject,
    fields.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(...fields.extensions)),
  );
  const signature = sign('sha256', tbs, fields.signingKey);
  return new X509Certificate(sequence(tbs, algorithm, bitString(signature)));
}

function validity(req: { notBefore?: Date; notAfter?: Date; validitySeconds?: number }, defaultSeconds: number): [Date, Date] {
  const notBefore = req.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = req.notAfter ?? new Date(Date.now() + (req.validitySeconds ?? defaultSeconds) * 1000);
  return [notBefore, notAfter];
}

function toPem(cert: X509Certificate, key: KeyObject): { certPem: string; keyPem: string } {
  return { certPem: cert.toString(), keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** A CA around an existing certificate and key (e.g. loaded from a Secret). */
export function certificateAuthorityFrom(certPem: string, keyPem: string): CertificateAuthority {
  const certificate = new X509Certificate(certPem);
  const privateKey = createPrivateKey(keyPem);
  if (!certificate.ca) throw new Error('the certificate is not a CA (basicConstraints cA is not set)');
  if (!certificate.checkPrivateKey(privateKey)) throw new Error('the private key does not match the CA certificate');
  // Leaves name the CA by its subject exactly as encoded (RFC 5280 4.1.2.4), so copy the bytes.
  const caSubject = subjectNameDer(certificate.raw);
  const caKeyId = authorityKeyIdentifierFor(certificate);
  return {
    certPem: certificate.toString(),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    certificate,
    privateKey,
    issue(request) {
      const [notBefore, notAfter] = validity(request, 24 * 3600);
      const leafKeys = newKeyPair();
      const usage = request.usage;
      const eku = [
        ...(usage.includes('server') ? [objectIdentifier(OID.serverAuth)] : []),
        ...(usage.includes('client') ? [objectIdentifier(OID.clientAuth)] : []),
      ];
      const extensions = [
        extension(OID.basicConstraints, true, sequence()),
        extension(OID.keyUsage, true, namedBitString([KEY_USAGE.digitalSignature])),
        extension(OID.extKeyUsage, false, sequence(...eku)),
        extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(leafKeys.publicKey))),
        extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, caKeyId))),
      ];
      const names = request.subjectAltNames ?? [];
      const uris = request.uris ?? [];
      if (names.length + uris.length > 0) extensions.push(extension(OID.subjectAltName, false, subjectAltNames(names, uris)));
      const leaf = signCertificate({
        issuer: caSubject,
        subject: name(request.commonName),
        notBefore,
        notAfter,
        publicKey: leafKeys.publicKey,
        signingKey: privateKey,
        extensions,
      });
      return { ...toPem(leaf, leafKeys.privateKey), certificate: leaf, privateKey: leafKeys.privateKey };
    },
  };
}

/** A new self-signed CA with a fresh P-256 key. */
export function createCertificateAuthority(request: CaRequest): CertificateAuthority {
  const keys = newKeyPair();
  const [notBefore, notAfter] = validity(request, 365 * 24 * 3600);
  const subject = name(request.commonName, request.organization);
  const cert = signCertificate({
    issuer: subject,
    subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      extension(OID.basicConstraints, true, sequence(boolean(true), smallInteger(0))), // cA, pathLen 0
      extension(OID.keyUsage, true, namedBitString([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign])),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(keys.publicKey))),
    ],
  });
  const pem = toPem(cert, keys.privateKey);
  return certificateAuthorityFrom(pem.certPem, pem.keyPem);
}

// --- reading what leaves must copy from their issuer ---------------------------------

/** The fields of TBSCertificate (RFC 5280 4.1), `version` [0] included when present. */
function tbsFields(certDer: Buffer): Buffer[] {
  return childrenOf(childrenOf(certDer)[0]!);
}

/** Returns the DER of the certificate's subject Name (the issuer Name of what it signs). */
function subjectNameDer(certDer: Buffer): Buffer {
  // tbsCertificate ::= SEQUENCE { [0] version, serial, sigAlg, issuer, validity, subject, ... }
  const fields = tbsFields(certDer);
  const hasVersion = tagOf(fields[0]!) === 0xa0;
  return fields[hasVersion ? 5 : 4]!;
}

/** The keyIdentifier of the certificate's Subject Key Identifier extension, if it has one. */
function subjectKeyIdentifierOf(certDer: Buffer): Buffer | undefined {
  const extensions = tbsFields(certDer).find((f) => tagOf(f) === 0xa3); // [3] EXPLICIT Extensions
  if (!extensions) return undefined;
  const wanted = objectIdentifier(OID.subjectKeyIdentifier);
  for (const ext of childrenOf(childrenOf(extensions)[0]!)) {
    // Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    const parts = childrenOf(ext);
    if (!parts[0]!.equals(wanted)) continue;
    // extnValue holds the DER of KeyIdentifier ::= OCTET STRING (RFC 5280 4.2.1.2).
    return contentsOf(contentsOf(parts[parts.length - 1]!));
  }
  return undefined;
}

/**
 * The keyIdentifier a leaf's Authority Key Identifier carries: the issuer's own Subject Key
 * Identifier, byte for byte (RFC 5280 4.2.1.1). Path builders such as OpenSSL compare the
 * two to find the issuer, so a value computed here another way names no CA they know
 * (issue 10 item 17: every CA made by `openssl req -x509` failed).
 *
 * A CA certificate without the extension does not conform (4.2.1.2 requires it of CAs), yet
 * 4.2.1.1 still requires a keyIdentifier in what it issues. Then the value is 4.2.1.2
 * method (1), the SHA-1 of the CA's subjectPublicKey bits: how OpenSSL (`hash`), Go's
 * crypto/x509 and cfssl identify a key, so the one an SKI added to that CA would most
 * likely carry. Verifiers skip the keyid comparison for an issuer without SKI, so this
 * choice cannot break a chain that would otherwise build.
 */
function authorityKeyIdentifierFor(issuer: X509Certificate): Buffer {
  return subjectKeyIdentifierOf(issuer.raw) ?? sha1KeyIdentifier(issuer.publicKey);
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 over the BIT STRING subjectPublicKey, without tag, length or unused-bits octet. */
function sha1KeyIdentifier(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const subjectPublicKey = contentsOf(childrenOf(spki)[1]!).subarray(1);
  return createHash('sha1').update(subjectPublicKey).digest();
}
