/**
 * /status as text for a person (`Accept: text/plain`, and what `sts-sidecar status` prints):
 * a few aligned tables, `-` where there is nothing to show. Built from the JSON report only,
 * so the text can hold nothing the JSON does not.
 */
import type { StatusReport } from './status.js';

export function statusText(r: StatusReport): string {
  const out: string[] = [];
  const state = r.shuttingDown ? 'shutting down' : r.ready ? 'ready' : 'NOT READY';
  out.push(`sts-sidecar ${r.version}: ${state}`);
  out.push(`config: generation ${r.config.generation}${r.config.file ? ` from ${r.config.file}` : ''}, loaded ${r.config.loadedAt}`);
  out.push('', 'LISTENERS', ...table(['KIND', 'NAME', 'URL'], r.listeners.map((l) => [l.kind, l.name, l.url])));
  out.push(
    '',
    'ROUTES',
    ...table(
      ['ROUTE', 'MATCH', 'UPSTREAM', 'PROTOCOL', 'STS', 'LAZY'],
      r.routes.map((x) => [x.name, matchText(x.match), x.upstream, x.upstreamProtocol, x.sts, x.lazy ? 'yes' : 'no']),
    ),
  );
  out.push(
    '',
    'TOKENS',
    ...table(
      ['ROUTE', 'VALID', 'EXPIRES IN', 'REFRESHING', 'FAILURES', 'LAST ERROR', 'ISSUER', 'SUBJECT', 'AUDIENCE', 'BOUND TO', 'DPOP KEY'],
      r.routes.map(({ name, token: t }) => [
        name,
        t.valid ? 'yes' : 'no',
        t.expiresInSeconds === null ? null : duration(t.expiresInSeconds),
        t.refreshing ? 'yes' : 'no',
        String(t.consecutiveFailures),
        t.lastErrorCode,
        t.issuer,
        t.subject,
        t.audience?.join(',') ?? null,
        t.boundThumbprint,
        t.boundKeyThumbprint,
      ]),
    ),
  );
  out.push('', 'IDENTITY');
  if (r.identity) {
    const i = r.identity;
    out.push(`  subject     ${i.subject}`, `  SANs        ${i.subjectAltNames.join(', ') || '-'}`, `  notAfter    ${i.notAfter}`, `  thumbprint  ${i.thumbprint} (generation ${i.generation})`);
  } else out.push('  none configured');
  if (r.dpopKey) out.push('', 'DPOP KEY', `  algorithm   ${r.dpopKey.algorithm}`, `  thumbprint  ${r.dpopKey.thumbprint} (RFC 7638)`);
  out.push(
    '',
    'SUBJECT TOKENS',
    ...table(['NAME', 'SOURCE', 'EXP', 'AUD', 'ISS', 'SUB'], r.subjectTokens.map((s) => [s.name, s.source, s.exp, s.aud?.join(',') ?? null, s.iss, s.sub])),
  );
  out.push(
    '',
    'STS',
    ...table(
      ['PROFILE', 'URL', 'LAST RESULT', 'AT', 'CODE', 'ROUTE'],
      Object.entries(r.sts).map(([name, p]) => [name, p.url, p.lastResult?.outcome ?? null, p.lastResult?.at ?? null, p.lastResult?.code ?? null, p.lastResult?.route ?? null]),
    ),
  );
  return `${out.join('\n')}\n`;
}

function matchText(m: StatusReport['routes'][number]['match']): string {
  const parts = [m.host ? `host ${m.host}` : null, m.pathPrefix !== '/' ? `path ${m.pathPrefix}*` : null, m.listen ? `listen ${m.listen}` : null];
  return parts.filter(Boolean).join(', ') || 'any';
}

function duration(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** Left-aligned columns, two spaces apart, indented by two; null shows as `-`. */
function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | null>>): string[] {
  const cells = [headers, ...rows.map((row) => row.map((c) => (c === null || c === '' ? '-' : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  if (rows.length === 0) return ['  none'];
  return cells.map((row) => `  ${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd());
}
