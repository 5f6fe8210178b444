/**
 * Certificates and mTLS clients for tests of certificate-bound tokens (RFC 8705): a
 * demo CA with alice and bob client certificates and a loopback server certificate,
 * plus a second CA whose certificates must never be trusted. Generated per test run
 * with src/pki; nothing is read from disk.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { createCertificateAuthority, type CertificateAuthority, type KeyPairPem } from '../../src/pki/certificates.js';

export interface TestPki {
  readonly ca: CertificateAuthority;
  /** A CA nobody trusts; `mallory` is issued by it. */
  readonly otherCa: CertificateAuthority;
  /** Server certificate for 127.0.0.1 and localhost. */
  readonly server: KeyPairPem;
  /** CN=alice, URI SAN spiffe://demo.test/ns/apps/sa/alice, DNS SAN alice.apps.demo.test. */
  readonly alice: KeyPairPem;
  /** CN=bob, same CA. */
  readonly bob: KeyPairPem;
  readonly mallory: KeyPairPem;
}

export const ALICE_SPIFFE_ID = 'spiffe://demo.test/ns/apps/sa/alice';

export function createTestPki(): TestPki {
  const ca = createCertificateAuthority({ commonName: 'sts-sidecar test CA', organization: 'Demo' });
  const otherCa = createCertificateAuthority({ commonName: 'untrusted CA' });
  return {
    ca,
    otherCa,
    server: ca.issue({ commonName: 'sts.test', subjectAltNames: ['127.0.0.1', 'localhost'], usage: 'server' }),
    alice: ca.issue({ commonName: 'alice', subjectAltNames: ['alice.apps.demo.test'], uris: [ALICE_SPIFFE_ID], usage: 'client' }),
    bob: ca.issue({ commonName: 'bob', uris: ['spiffe://demo.test/ns/apps/sa/bob'], usage: 'client' }),
    mallory: otherCa.issue({ commonName: 'alice', uris: [ALICE_SPIFFE_ID], usage: 'client' }),
  };
}

/** An undici dispatcher trusting `caPem`, presenting `client` when given. */
export function tlsAgent(caPem: string, client?: KeyPairPem): Agent {
  return new Agent({ connect: { ca: caPem, ...(client ? { cert: client.certPem, key: client.keyPem } : {}) } });
}

export interface Reply {
  readonly status: number;
  readonly headers: Dispatcher.ResponseData['headers'];
  readonly body: Record<string, unknown>;
  readonly text: string;
}

export async function send(
  url: string,
  dispatcher: Dispatcher,
  init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const res = await request(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, body: init.body ?? null, dispatcher });
  const text = await res.body.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Non-JSON bodies are asserted through `text`.
  }
  return { status: res.statusCode, headers: res.headers, body, text };
}

export function postForm(url: string, dispatcher: Dispatcher, pairs: [string, string][], headers: Record<string, string> = {}): Promise<Reply> {
  return send(url, dispatcher, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(pairs).toString(),
  });
}

export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_JWT_URN = 'urn:ietf:params:oauth:token-type:jwt';

/** RFC 8693 section 2.1 parameters for a JWT subject token. */
export function exchangeForm(subjectToken: string, extra: [string, string][] = []): [string, string][] {
  return [['grant_type', GRANT_TOKEN_EXCHANGE], ['subject_token', subjectToken], ['subject_token_type', TOKEN_TYPE_JWT_URN], ...extra];
}
