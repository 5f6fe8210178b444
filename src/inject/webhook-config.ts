/**
 * The injector's own configuration (`sts-sidecar inject --config webhook.yaml`): the sidecar
 * image, the namespaces never touched, and the defaults annotations may override. Unknown
 * keys are refused, as in the sidecar's config; the result is frozen.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { formatKeyPath, ConfigValidationError } from '../config/load.js';
import { ConfigError } from '../errors.js';
import { VERSION } from '../version.js';

/** Always skipped, whatever the config says: the control plane must never wait for us. */
export const ALWAYS_EXCLUDED_NAMESPACES = ['kube-system'] as const;

const quantity = z.string().min(1);

const defaultsSchema = z.strictObject({
  /** The STS for generated configs when a pod names none (`sts-sidecar.io/sts-url`). */
  stsUrl: z.url().optional(),
  /** The projected token's audience when a pod names none; else the STS URL's origin. */
  tokenAudience: z.string().min(1).optional(),
  tokenExpirationSeconds: z.number().int().min(600).max(86_400).default(3600),
  adminPort: z.number().int().min(1).max(65535).default(15000),
  proxyPort: z.number().int().min(1).max(65535).default(15001),
  /** NO_PROXY / no_proxy with `sts-sidecar.io/proxy-env: "true"`: loopback and in-cluster names stay direct. */
  noProxy: z.string().default('localhost,127.0.0.1,::1,.svc,.cluster.local'),
  /**
   * The sidecar's resources, as k8s/base/deployment.yaml sizes them from `npm run bench`
   * (issue 15, docs/benchmarks.md): memory request = max(idle RSS x 1.2, RSS under 50
   * connections) = 96Mi; limit = the highest load or soak RSS x 1.5 = 144Mi; CPU request = CPU
   * per request x rate x 1.25 + 5m idle (50m covers about 270 req/s).
   */
  resources: z
    .strictObject({
      requests: z.strictObject({ cpu: quantity.default('50m'), memory: quantity.default('96Mi') }).prefault({}),
      limits: z.strictObject({ cpu: quantity.default('500m'), memory: quantity.default('144Mi') }).prefault({}),
    })
    .prefault({}),
});

export const webhookConfigSchema = z.strictObject({
  /** The sidecar image injected into pods. */
  image: z.string().min(1).default(`sts-sidecar:${VERSION}`),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
  /** Skipped with `allowed: true` and no patch, on top of kube-system. */
  excludedNamespaces: z.array(z.string().min(1)).default([]),
  defaults: defaultsSchema.prefault({}),
  limits: z
    .strictObject({
      /** An AdmissionReview of a large pod stays well under this; the API server's own request cap is 3 MiB. */
      maxBodyBytes: z.number().int().min(1024).default(4 * 1024 * 1024),
      /** The API server waits at most timeoutSeconds (5 in k8s/); a slower peer is cut off. */
      requestTimeoutSeconds: z.number().positive().default(10),
      maxConnections: z.number().int().min(1).default(256),
    })
    .prefault({}),
  /** Poll for a rotated certificate and key, on top of fs.watch. */
  tlsPollIntervalSeconds: z.number().min(0.05).default(5),
});

export type WebhookConfig = z.infer<typeof webhookConfigSchema>;
export type InjectorDefaults = WebhookConfig['defaults'];

export function parseWebhookConfig(input: unknown): WebhookConfig {
  const result = webhookConfigSchema.safeParse(input ?? {});
  if (!result.success) {
    throw new ConfigValidationError(
      result.error.issues.flatMap((issue) =>
        issue.code === 'unrecognized_keys'
          ? issue.keys.map((key) => ({ path: formatKeyPath([...issue.path, key]), problem: 'unknown key' }))
          : [{ path: formatKeyPath(issue.path), problem: issue.message }],
      ),
    );
  }
  return deepFreeze(result.data);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

export async function loadWebhookConfig(path: string): Promise<WebhookConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read webhook config ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err, code: 'ERR_CONFIG_UNREADABLE' });
  }
  let input: unknown;
  try {
    input = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    throw new ConfigError('', `${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  return parseWebhookConfig(input);
}

export function isExcludedNamespace(config: WebhookConfig, namespace: string | undefined): boolean {
  if (namespace === undefined) return false;
  return (ALWAYS_EXCLUDED_NAMESPACES as readonly string[]).includes(namespace) || config.excludedNamespaces.includes(namespace);
}
