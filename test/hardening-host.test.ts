/**
 * RFC 9112 section 3.2: a request with more than one Host field line is answered 400 and never
 * routed. Two Host lines could name two routes; the fuzz test of issue 10 saw them routed by
 * the first. Raw sockets, since well-behaved clients never send two.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startFakeSts } from './helpers/fake-sts.js';
import { startHarness, startUpstream, TOKEN_TYPE_ACCESS, type SidecarHarness, type TestUpstream } from './helpers/harness.js';
import type { FakeSts } from './helpers/fake-sts.js';
import { portOf } from './helpers/sockets.js';

/** Sends `head` on a fresh connection and reads until the peer closes or a whole answer arrived. */
function exchange(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
      if (end !== -1 && length && text.length >= end + 4 + Number(length[1])) socket.end();
    });
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
    socket.write(head);
  });
}

describe('two Host lines are refused with 400 (RFC 9112 3.2)', () => {
  let sts: FakeSts;
  let orders: TestUpstream;
  let admin: TestUpstream;
  let h: SidecarHarness;
  before(async () => {
    sts = await startFakeSts();
    orders = await startUpstream();
    admin = await startUpstream();
    h = await startHarness({
      subjectToken: { value: 'iamtheeggman', type: TOKEN_TYPE_ACCESS },
      sts: { url: sts.tokenUrl },
      routes: [
        { name: 'orders', host: 'orders.internal', upstream: orders.url, audience: 'orders' },
        { name: 'admin', host: 'admin.internal', listen: '127.0.0.1:0', upstream: admin.url, audience: 'admin' },
      ],
    });
  });
  after(async () => {
    await h.close();
    await orders.close();
    await admin.close();
    await sts.close();
  });

  it('on the shared listener: 400 ERR_PROXY_BAD_REQUEST, nothing forwarded', async () => {
    const answer = await exchange(portOf(h.sidecar.proxyUrl), 'GET /x HTTP/1.1\r\nHost: orders.internal\r\nHost: admin.internal\r\nConnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /x-sts-sidecar-error: ERR_PROXY_BAD_REQUEST/i);
    assert.equal(orders.requests.length + admin.requests.length, 0);
  });

  it('on a route listener too; one Host line is served as before', async () => {
    const port = portOf(h.sidecar.routeUrls['admin']!);
    const twice = await exchange(port, 'GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n');
    assert.match(twice, /^HTTP\/1\.1 400 /);
    assert.equal(admin.requests.length, 0);
    const once = await exchange(port, 'GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.match(once, /^HTTP\/1\.1 200 /);
    assert.equal(admin.requests.length, 1);
  });
});
