/**
 * The one info line a sidecar writes when it is listening: where each listener is, what each
 * route serves, the STS and the credential sources. Never a secret: sources are described,
 * not read, and endpoint URLs are listed as {name, url} because the redaction of every
 * `token` key would censor `{ token: url }` (issue 10 item 20).
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { WorkloadIdentity } from '../tls/identity.js';
import { describeIdentity } from '../tls/identity-from-config.js';

export interface ListeningSummary {
  readonly proxyUrl: string;
  readonly adminUrl: string;
  readonly routeUrls: Readonly<Record<string, string>>;
  readonly endpointUrls: Readonly<Record<string, string>>;
  readonly interceptionCaCert: string | undefined;
  readonly subjectTokenSource: string;
  readonly identity: WorkloadIdentity | undefined;
}

export function logListening(logger: Logger, config: Config, s: ListeningSummary): void {
  logger.info(
    {
      proxy: s.proxyUrl,
      admin: s.adminUrl,
      routes: config.routes.map((r) => ({ name: r.name, host: r.host ?? null, listen: s.routeUrls[r.name] ?? null, upstream: r.upstream?.origin ?? null, intercept: r.intercept })),
      forward: { unmatched: config.forward.unmatched, caCert: s.interceptionCaCert ?? null },
      endpoints: Object.entries(s.endpointUrls).map(([name, url]) => ({ name, url })),
      sts: `${config.sts.url.origin}${config.sts.url.pathname}`,
      subjectTokenSource: s.subjectTokenSource,
      ...(s.identity ? { identity: describeIdentity(s.identity.current()) } : {}),
    },
    'sts-sidecar listening',
  );
}
