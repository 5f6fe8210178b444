/**
 * `sts-sidecar status`: asks a running sidecar's admin listener for /status and prints it for
 * a person (or as JSON with --json). The exit code is for scripts and probes: 0 ready,
 * 1 not ready (starting, failing, shutting down), 2 unreachable or not a sidecar.
 */
import { parseArgs } from 'node:util';
import { statusText } from '../admin/status-text.js';
import type { StatusReport } from '../admin/status.js';

const DEFAULT_ADMIN = 'http://127.0.0.1:15000';
const TIMEOUT_MS = 5000;

const USAGE = `Usage: sts-sidecar status [--admin URL] [--json]

Prints what a running sidecar is doing: config generation, listeners, routes and their
tokens (valid, expiry, failures, issuer, audience), the workload identity, the subject
tokens' claims and the STS's last result. Never a token or a secret.

Options:
  --admin URL   the sidecar's admin listener; default: $STS_SIDECAR_ADMIN, else ${DEFAULT_ADMIN}
  --json        print the JSON report instead of the tables
  -h, --help    this help

Exit status: 0 ready, 1 not ready, 2 unreachable.
`;

export async function statusCommand(argv: string[]): Promise<number> {
  let values: { admin?: string | undefined; json?: boolean | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { admin: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`sts-sidecar status: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const admin = values.admin ?? process.env['STS_SIDECAR_ADMIN'] ?? DEFAULT_ADMIN;
  let url: URL;
  try {
    // "127.0.0.1:15000" is what admin.listen looks like: accept it as http.
    url = new URL('/status', /^[a-z][a-z0-9+.-]*:\/\//i.test(admin) ? admin : `http://${admin}`);
  } catch {
    process.stderr.write(`sts-sidecar status: not a URL: ${admin}\n`);
    return 2;
  }
  let report: StatusReport;
  try {
    const res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    report = (await res.json()) as StatusReport;
    if (typeof report.ready !== 'boolean' || !Array.isArray(report.routes)) throw new Error('the reply is not a sidecar status report');
  } catch (err) {
    const cause = err instanceof Error ? (err.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
    const detail = cause ? ` (${String(cause.code ?? cause.message)})` : '';
    const reason = `${err instanceof Error ? err.message : String(err)}${detail}`;
    process.stderr.write(`sts-sidecar status: cannot read ${url.href}: ${reason}\n`);
    return 2;
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : statusText(report));
  return report.ready ? 0 : 1;
}
