/**
 * `sts-sidecar inject`: the mutating admission webhook (issue 14), or, with --file, the same
 * mutation applied to a manifest and printed, for people without a cluster.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';
import { ConfigError, SidecarError } from '../errors.js';
import { injectWorkload } from '../inject/workload.js';
import { loadWebhookConfig, parseWebhookConfig, type WebhookConfig } from '../inject/webhook-config.js';
import { startInjectorServer } from '../inject/server.js';
import { createLogger } from '../log/logger.js';
import { openWorkloadIdentity } from '../tls/identity.js';
import { parseListenFlag, UsageError, waitForStopSignal } from './serve-helpers.js';

const USAGE = `Usage:
  sts-sidecar inject --listen HOST:PORT --tls-cert FILE --tls-key FILE [--config webhook.yaml]
  sts-sidecar inject --file MANIFEST [--config webhook.yaml] [--namespace NS]

The first form serves the mutating admission webhook over HTTPS: POST /mutate takes an
admission.k8s.io/v1 AdmissionReview, GET /healthz answers 200. The certificate and key
are re-read when they change (cert-manager rotation). SIGTERM or SIGINT stops it.

The second form applies the same mutation to a Pod, Deployment, StatefulSet, DaemonSet,
ReplicaSet, Job or CronJob (one or more YAML documents; "-" reads stdin) and prints the
result; other objects are printed unchanged. A refused pod exits 2 with the reason.

Options:
  --listen HOST:PORT   where to serve (e.g. 0.0.0.0:8443)
  --tls-cert FILE      PEM certificate chain (leaf first)
  --tls-key FILE       PEM private key
  --config FILE        webhook config (image, excluded namespaces, defaults); see docs/deployment.md
  --file FILE          a manifest to mutate and print instead of serving
  --namespace NS       the namespace the objects of --file would be created in
  -h, --help           this help
`;

/** A manifest --file cannot use: reported without the usage text. */
class InputError extends Error {}

export async function injectCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        config: { type: 'string', short: 'c' },
        file: { type: 'string', short: 'f' },
        namespace: { type: 'string', short: 'n' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`sts-sidecar inject: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values['help']) {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    const config = typeof values['config'] === 'string' ? await loadWebhookConfig(values['config']) : parseWebhookConfig({});
    if (typeof values['file'] === 'string') return await injectFile(values['file'], config, values['namespace'] as string | undefined);
    return await serve(values, config);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`sts-sidecar inject: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof SidecarError || err instanceof InputError) {
      process.stderr.write(`sts-sidecar inject: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

async function injectFile(file: string, config: WebhookConfig, namespace: string | undefined): Promise<number> {
  const text =
    file === '-'
      ? await readStdin()
      : await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
          throw new InputError(`--file ${file}: cannot read it: ${err.code ?? err.message}`);
        });
  const out: string[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    if (doc.errors.length > 0) throw new InputError(`--file ${file}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
    const object: unknown = doc.toJS();
    if (object === null || object === undefined) continue;
    if (typeof object !== 'object' || Array.isArray(object)) throw new InputError(`--file ${file}: a document is not a mapping`);
    const result = injectWorkload(object as Record<string, unknown>, config, namespace);
    if (result.kind === 'refuse') {
      process.stderr.write(`sts-sidecar inject: ${result.kindName}: refused: ${result.refusal.message}\n`);
      return 2;
    }
    if (result.kind === 'skip' && result.reason !== 'not-requested') process.stderr.write(`sts-sidecar inject: ${result.kindName}: unchanged (${result.reason})\n`);
    out.push(stringify(object, { lineWidth: 0 }));
  }
  process.stdout.write(out.join('---\n'));
  return 0;
}

async function serve(values: Record<string, string | boolean | undefined>, config: WebhookConfig): Promise<number> {
  const listenValue = values['listen'];
  if (typeof listenValue !== 'string') throw new UsageError('--listen is required (or --file)');
  const listen = parseListenFlag('--listen', listenValue, '0.0.0.0:8443');
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  if (typeof cert !== 'string' || typeof key !== 'string') throw new UsageError('--tls-cert and --tls-key are required: the API server calls webhooks over HTTPS only');
  const logger = createLogger('info');
  // The sidecar's identity loader: both files re-read together, a half-written pair skipped.
  const identity = await openWorkloadIdentity({
    files: { cert, key },
    pollIntervalMs: config.tlsPollIntervalSeconds * 1000,
    keyPath: 'tls',
    onError: (err) => logger.warn({ err, file: err.key === 'key' ? '--tls-key' : '--tls-cert' }, 'rotated serving certificate not usable; the previous one stays'),
  }).catch((err: unknown) => {
    // Its errors name config keys (`tls.cert: ...`); here they are flags.
    if (err instanceof ConfigError) throw new UsageError(err.message.replace(/^tls\.(cert|key)/, '--tls-$1'));
    throw err;
  });
  const listeners: Array<() => void> = [];
  identity.onChange(() => listeners.forEach((l) => l()));
  const server = await startInjectorServer({ listen, config, logger, certificate: { current: () => identity.current(), onChange: (l) => void listeners.push(l) } });
  logger.info({ listen: `${server.address.host}:${server.address.port}`, image: config.image }, 'sts-sidecar injector listening');
  const signal = await waitForStopSignal();
  logger.info({ signal }, 'shutting down');
  identity.close();
  await server.close();
  return 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
