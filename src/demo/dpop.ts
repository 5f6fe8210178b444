/**
 * The demo's DPoP step (issue 16): a plain-HTTP resource server that accepts a token only
 * with a valid proof of the key it is bound to (`sts-sidecar/verify`'s verifyDpopRequest,
 * with a jti replay cache), a request through the sidecar's DPoP route, and the same token
 * and proof replayed as an attacker who captured them would: refused. No mTLS here: the
 * binding survives a TLS-terminating edge, which is the point of DPoP.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JSONWebKeySet } from 'jose';
import { request } from 'undici';
import { BoundTokenError } from '../errors.js';
import { sendJson } from '../http/reply.js';
import { DpopReplayCache } from '../resource/dpop-proof.js';
import { verifyDpopRequest } from '../resource/verify-dpop.js';

export interface DemoDpopUpstream {
  readonly url: string;
  /** The headers of the last request accepted (kept in memory for the replay step; never printed). */
  readonly lastAccepted: IncomingHttpHeaders | undefined;
  close(): Promise<void>;
}

export async function startDemoDpopUpstream(options: { jwks: JSONWebKeySet; issuer: string; audience: string; port: number }): Promise<DemoDpopUpstream> {
  const replay = new DpopReplayCache();
  let lastAccepted: IncomingHttpHeaders | undefined;
  let url = '';
  const server = createServer((req, res) => {
    verifyDpopRequest(req, `${url}${req.url ?? '/'}`, { jwks: options.jwks, issuer: options.issuer, audience: options.audience, replayCache: replay }).then(
      (claims) => {
        lastAccepted = req.headers;
        sendJson(res, 200, { ok: true, sub: claims.sub, cnf: { jkt: claims.cnf.jkt } });
      },
      (err: unknown) => {
        const code = err instanceof BoundTokenError ? err.code : 'ERR_UNKNOWN';
        sendJson(res, 401, { ok: false, code }, { 'www-authenticate': 'DPoP error="invalid_token"' });
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(options.port, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    get lastAccepted() {
      return lastAccepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Step 7: through the sidecar (200), then the captured token and proof replayed (401). True when both behaved. */
export async function dpopDemoStep(upstream: DemoDpopUpstream, routeUrl: string, out: (line?: string) => void): Promise<boolean> {
  const through = await request(`${routeUrl}/orders/42`);
  const body = await through.body.text();
  out(`7. DPoP (RFC 9449): app -> sidecar ${routeUrl} -> plain-HTTP upstream ${upstream.url}: HTTP ${through.statusCode} ${body}`);
  out('   The sidecar holds the DPoP key: Authorization: DPoP <token> and a fresh signed proof on every request.');
  const captured = upstream.lastAccepted;
  if (!captured) return false;
  const replayed = await request(`${upstream.url}/orders/42`, { headers: { authorization: String(captured.authorization), dpop: String(captured.dpop) } });
  const replayBody = await replayed.body.text();
  out(`   The same token and proof replayed by another client: HTTP ${replayed.statusCode} ${replayBody}`);
  return through.statusCode === 200 && replayed.statusCode === 401 && replayBody.includes('ERR_BOUND_TOKEN_DPOP_REPLAYED');
}
