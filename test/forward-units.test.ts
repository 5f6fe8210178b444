/**
 * Issue 4, the forward proxy's parts on their own: request-target parsing (RFC 9112 3.2.2,
 * 3.2.3), destination matching, the leaf-certificate cache, and the configuration keys
 * (bad ones fail at start-up naming the key).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { createServer } from 'node:tls';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { ConfigValidationError, parseConfig } from '../src/config/load.js';
import { ConfigError, ForwardTargetError } from '../src/errors.js';
import { startSidecar } from '../src/main.js';
import { createCertificateAuthority } from '../src/pki/certificates.js';
import { authority, parseAbsoluteForm, parseAuthority } from '../src/proxy/forward/destination.js';
import { LeafCertificateCache } from '../src/proxy/forward/leaf-cache.js';
import { RouteTable } from '../src/proxy/routing.js';
import { sleep } from './helpers/eventually.js';
import { tempDir } from './helpers/loopback.js';

describe('request targets', () => {
  it('RFC 9112 3.2.2: absolute-form keeps the path and query exactly as sent; an empty path becomes "/"', () => {
    assert.deepEqual(parseAbsoluteForm('http://Orders.Internal/a/../b%2F?x=1&y'), {
      scheme: 'http',
      destination: { name: 'orders.internal', port: 80 },
      path: '/a/../b%2F?x=1&y',
    });
    assert.deepEqual(parseAbsoluteForm('HTTPS://api.internal:8443'), { scheme: 'https', destination: { name: 'api.internal', port: 8443 }, path: '/' });
    assert.deepEqual(parseAbsoluteForm('http://h.internal?q'), { scheme: 'http', destination: { name: 'h.internal', port: 80 }, path: '/?q' });
    assert.deepEqual(parseAbsoluteForm('http://[::1]:8080/x').destination, { name: '[::1]', port: 8080 });
    assert.deepEqual(parseAbsoluteForm('http://fqdn.internal./x').destination, { name: 'fqdn.internal', port: 80 });
  });

  it('RFC 9112 3.2.3: CONNECT needs host:port; bad hosts, ports, schemes and userinfo are ForwardTargetErrors', () => {
    assert.deepEqual(parseAuthority('Api.Internal:443', undefined), { name: 'api.internal', port: 443 });
    assert.deepEqual(parseAuthority('[2001:db8::1]:443', undefined), { name: '[2001:db8::1]', port: 443 });
    for (const bad of ['api.internal', 'api.internal:', 'api.internal:0', 'api.internal:65536', 'api.internal:12a', ':443', '[nope]:443', 'a b:443', 'u@h:443']) {
      assert.throws(() => parseAuthority(bad, undefined), ForwardTargetError, bad);
    }
    for (const bad of ['ftp://h/x', 'http://u:p@h/x', 'http:/h/x', '//h/x']) {
      assert.throws(() => parseAbsoluteForm(bad), ForwardTargetError, bad);
    }
  });

  it('RFC 9110 7.2: the Host sent on is the authority, with the port only when it is not the scheme default', () => {
    assert.equal(authority({ name: 'h', port: 80 }, 'http'), 'h');
    assert.equal(authority({ name: 'h', port: 443 }, 'http'), 'h:443');
    assert.equal(authority({ name: 'h', port: 443 }, 'https'), 'h');
    assert.equal(authority({ name: '[::1]', port: 8443 }, 'https'), '[::1]:8443');
  });
});

describe('destination matching', () => {
  const table = new RouteTable([
    { name: 'plain', host: 'api.internal', pathPrefix: '/' },
    { name: 'plain-v2', host: 'api.internal', pathPrefix: '/v2' },
    { name: 'tls-port', host: 'api.internal:8443', pathPrefix: '/' },
    { name: 'listen-only', host: undefined, pathPrefix: '/' },
  ]);
  const match = (port: number, defaultPort: number, path: string) => table.matchDestination('api.internal', port, defaultPort, path)?.name;

  it("a route host without a port matches only the scheme's default port; one with a port only that port", () => {
    assert.equal(match(80, 80, '/x'), 'plain');
    assert.equal(match(443, 443, '/x'), 'plain');
    assert.equal(match(443, 80, '/x'), undefined);
    assert.equal(match(8443, 443, '/x'), 'tls-port');
    assert.equal(match(8443, 80, '/x'), 'tls-port');
    assert.equal(match(9000, 80, '/x'), undefined);
    assert.equal(match(80, 80, '/v2/x'), 'plain-v2', 'longest pathPrefix first');
    assert.equal(table.forDestination('other.internal', 80, 80), undefined);
  });

  it('on the default port, routes naming it and portless routes of the host are one set, longest prefix first', () => {
    const both = new RouteTable([
      { name: 'portless-root', host: 'h.internal', pathPrefix: '/' },
      { name: 'explicit-v1', host: 'h.internal:443', pathPrefix: '/v1' },
      { name: 'explicit-root', host: 'h.internal:443', pathPrefix: '/' },
    ]);
    assert.deepEqual(both.forDestination('h.internal', 443, 443)?.map((r) => r.name), ['explicit-v1', 'explicit-root', 'portless-root']);
    assert.equal(both.matchDestination('h.internal', 443, 443, '/other')?.name, 'explicit-root');
    assert.deepEqual(both.forDestination('h.internal', 80, 80)?.map((r) => r.name), ['portless-root']);
  });

  it('the reverse proxy keeps matching a portless route host on any port of the Host header', () => {
    assert.equal(table.match('api.internal:15001', '/x')?.name, 'plain');
    assert.equal(table.match('api.internal:8443', '/x')?.name, 'tls-port');
  });
});

describe('leaf certificates for intercepted hosts', () => {
  it('one leaf per host, reused, re-issued once three quarters of its life are gone, never outliving the CA', async (t) => {
    const ca = createCertificateAuthority({ commonName: 'leaf cache CA', validitySeconds: 3 * 3600 });
    let now = Date.now();
    const leaves = new LeafCertificateCache(ca, { validitySeconds: 3600, now: () => now });
    const first = leaves.contextFor('api.internal');
    assert.equal(leaves.contextFor('api.internal'), first);
    assert.equal(leaves.issued, 1);
    leaves.contextFor('127.0.0.1');
    assert.equal(leaves.issued, 2);
    now += 44 * 60_000;
    assert.equal(leaves.contextFor('api.internal'), first);
    now += 2 * 60_000; // 46 min: past 3/4 of the hour
    const renewed = leaves.contextFor('api.internal');
    assert.notEqual(renewed, first);
    assert.equal(leaves.issued, 3);

    // What a client sees: the leaf for the host, issued by the CA, not past the CA's own expiry.
    const short = new LeafCertificateCache(ca, { validitySeconds: 30 * 24 * 3600 });
    const server = createServer({ SNICallback: (_name, cb) => cb(null, short.contextFor('api.internal')) }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.close());
    const socket: TLSSocket = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', servername: 'api.internal', ca: ca.certPem });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    const peer = new X509Certificate(socket.getPeerX509Certificate()!.raw);
    socket.destroy();
    assert.equal(peer.checkHost('api.internal'), 'api.internal');
    assert.ok(peer.checkIssued(ca.certificate));
    assert.ok(Date.parse(peer.validTo) <= Date.parse(ca.certificate.validTo));
  });
});

describe('forward configuration', () => {
  const base = () => ({
    subjectToken: { value: 'tok' },
    sts: { url: 'https://sts.example.com/token' },
    routes: [{ name: 'orders', host: 'orders.internal', upstream: 'https://orders.internal' }] as Array<Record<string, unknown>>,
  });
  const problemsAt = (input: unknown): string[] => {
    try {
      parseConfig(input);
    } catch (err) {
      assert.ok(err instanceof ConfigValidationError);
      return err.problems.map((p) => p.path);
    }
    return [];
  };

  it('defaults: unmatched tunnel, no CA files, routes do not intercept', () => {
    const c = parseConfig(base());
    assert.deepEqual({ ...c.forward }, { unmatched: 'tunnel', leafValiditySeconds: 86400 });
    assert.equal(c.routes[0]!.intercept, false);
  });

  it('bad forward settings are rejected naming the key', () => {
    assert.deepEqual(problemsAt({ ...base(), forward: { unmatched: 'drop' } }), ['forward.unmatched']);
    assert.deepEqual(problemsAt({ ...base(), forward: { cacert: '/x' } }), ['forward.cacert']);
    assert.deepEqual(problemsAt({ ...base(), forward: { ca: { cert: '/c' } } }), ['forward.ca.key']);
    assert.deepEqual(problemsAt({ ...base(), forward: { ca: { cert: '/c', key: '/k' }, caCertOut: '/out' } }), ['forward.caCertOut']);
    assert.deepEqual(problemsAt({ ...base(), forward: { leafValiditySeconds: 5 } }), ['forward.leafValiditySeconds']);
  });

  it('intercept needs a host, and every route of one host agrees on it', () => {
    const noHost = base();
    noHost.routes = [{ name: 'a', listen: '127.0.0.1:0', upstream: 'https://a.internal', intercept: true }];
    assert.deepEqual(problemsAt(noHost), ['routes[0].intercept']);
    const split = base();
    split.routes.push({ name: 'orders-v2', host: 'Orders.internal', pathPrefix: '/v2', upstream: 'https://orders.internal', intercept: true });
    assert.deepEqual(problemsAt(split), ['routes[1].intercept']);
    const samePort = base();
    samePort.routes.push({ name: 'orders-443', host: 'orders.internal:443', pathPrefix: '/v2', upstream: 'https://orders.internal', intercept: true });
    assert.deepEqual(problemsAt(samePort), ['routes[1].intercept'], 'h and h:443 are the same https destination');
    const agreed = base();
    agreed.routes[0]!['intercept'] = true;
    agreed.routes.push({ name: 'orders-v2', host: 'orders.internal', pathPrefix: '/v2', upstream: 'https://orders.internal', intercept: true });
    assert.deepEqual(problemsAt(agreed), []);
  });

  it('at start-up an unreadable or unusable forward.ca fails naming the key', async (t) => {
    const dir = await tempDir();
    t.after(() => dir.cleanup());
    const notCa = createCertificateAuthority({ commonName: 'issuer' }).issue({ commonName: 'leaf', usage: 'server' });
    await writeFile(join(dir.path, 'leaf.crt'), notCa.certPem);
    await writeFile(join(dir.path, 'leaf.key'), notCa.keyPem);
    const start = (forward: Record<string, unknown>) =>
      startSidecar(
        parseConfig({
          ...base(),
          proxy: { listen: '127.0.0.1:0' },
          admin: { listen: '127.0.0.1:0' },
          log: { level: 'silent' },
          forward,
          routes: [{ name: 'orders', host: 'orders.internal', upstream: 'http://127.0.0.1:9', intercept: true, lazy: true }],
        }),
      );
    await assert.rejects(start({ ca: { cert: join(dir.path, 'missing.crt'), key: join(dir.path, 'leaf.key') } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.path, 'forward.ca.cert');
      return true;
    });
    await assert.rejects(start({ ca: { cert: join(dir.path, 'leaf.crt'), key: join(dir.path, 'leaf.key') } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.path, 'forward.ca');
      assert.match(err.message, /not a CA/);
      return true;
    });
    const expired = createCertificateAuthority({ commonName: 'expired', notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
    await writeFile(join(dir.path, 'expired.crt'), expired.certPem);
    await writeFile(join(dir.path, 'expired.key'), expired.keyPem);
    await assert.rejects(start({ ca: { cert: join(dir.path, 'expired.crt'), key: join(dir.path, 'expired.key') } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.path, 'forward.ca.cert');
      assert.match(err.message, /expired/);
      return true;
    });
    await assert.rejects(start({ caCertOut: join(dir.path, 'leaf.crt', 'below-a-file.pem') }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.path, 'forward.caCertOut');
      return true;
    });
  });
});

describe('tunnel first bytes', () => {
  /** A connected TCP pair on loopback: the sidecar's side and the app's side. */
  const withSocketPair = async (use: (server: Socket, client: Socket) => Promise<void>) => {
    const srv = createNetServer();
    const accepted = new Promise<Socket>((resolve) => srv.once('connection', resolve));
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const client = netConnect((srv.address() as AddressInfo).port, '127.0.0.1');
    const server = await accepted;
    try {
      await use(server, client);
    } finally {
      client.destroy();
      server.destroy();
      srv.close();
    }
  };

  it('an answered CONNECT that stays silent is given up after the timeout, not held forever', async () => {
    const { firstBytes } = await import('../src/proxy/forward/tunnel.js');
    await withSocketPair(async (server) => {
      const started = Date.now();
      const first = await new Promise<Buffer | undefined>((resolve) => firstBytes(server, Buffer.alloc(0), resolve, 100));
      assert.equal(first, undefined);
      assert.ok(Date.now() - started >= 90, 'waited for the timeout');
    });
  });

  it('the first chunk the app sends is handed over, and the timeout is cancelled', async () => {
    const { firstBytes } = await import('../src/proxy/forward/tunnel.js');
    await withSocketPair(async (server, client) => {
      const calls: Array<Buffer | undefined> = [];
      const first = new Promise<void>((resolve) =>
        firstBytes(server, Buffer.alloc(0), (chunk) => {
          calls.push(chunk);
          resolve();
        }, 100),
      );
      client.write('GET / HTTP/1.1\r\n');
      await first;
      await sleep(200); // a fixed wait on purpose: the 100 ms timer must not fire in it
      assert.equal(calls.length, 1, 'called once: the timer did not fire afterwards');
      assert.equal(calls[0]!.toString(), 'GET / HTTP/1.1\r\n');
    });
  });
});
