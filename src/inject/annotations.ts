/**
 * The pod annotations the injector reads (issue 14), parsed once into a typed request.
 * Every refusal names the annotation at fault, because the API server shows the message
 * to whoever ran `kubectl apply` and that is the line they have to change.
 */
import type { InjectorDefaults } from './webhook-config.js';

export const PREFIX = 'sts-sidecar.io/';

/** Every annotation the injector reads; anything else under the prefix is refused as a typo. */
export const ANNOTATIONS = {
  inject: `${PREFIX}inject`,
  configMap: `${PREFIX}config-map`,
  stsUrl: `${PREFIX}sts-url`,
  upstreamHost: `${PREFIX}upstream-host`,
  upstream: `${PREFIX}upstream`,
  audience: `${PREFIX}audience`,
  scope: `${PREFIX}scope`,
  routePort: `${PREFIX}route-port`,
  tokenAudience: `${PREFIX}token-audience`,
  tokenExpirationSeconds: `${PREFIX}token-expiration-seconds`,
  identitySecret: `${PREFIX}identity-secret`,
  adminPort: `${PREFIX}admin-port`,
  proxyPort: `${PREFIX}proxy-port`,
  proxyEnv: `${PREFIX}proxy-env`,
  cpuRequest: `${PREFIX}cpu-request`,
  memoryRequest: `${PREFIX}memory-request`,
  cpuLimit: `${PREFIX}cpu-limit`,
  memoryLimit: `${PREFIX}memory-limit`,
} as const;

/**
 * Written by the injector, never by the pod's author: the status marker, and the generated
 * config that a downward-API volume turns into the sidecar's config file.
 */
export const STATUS_ANNOTATION = `${PREFIX}status`;
export const GENERATED_CONFIG_ANNOTATION = `${PREFIX}generated-config`;

/** The annotations that describe a generated config; they make no sense next to a ConfigMap. */
export const GENERATED_CONFIG_ANNOTATIONS = [
  ANNOTATIONS.stsUrl,
  ANNOTATIONS.upstreamHost,
  ANNOTATIONS.upstream,
  ANNOTATIONS.audience,
  ANNOTATIONS.scope,
  ANNOTATIONS.routePort,
] as const;

/** Why a pod is refused: the annotation to change and what is wrong with it. */
export class Refusal {
  constructor(
    readonly annotation: string,
    readonly problem: string,
  ) {}
  get message(): string {
    return `${this.annotation}: ${this.problem}`;
  }
}

/** Where the sidecar's config comes from. */
export type ConfigSource =
  | { readonly kind: 'configMap'; readonly name: string }
  | {
      readonly kind: 'generated';
      readonly stsUrl: string;
      /** The host the app names (route `host`). */
      readonly upstreamHost: string;
      /** Where the sidecar sends it (route `upstream`). */
      readonly upstream: string;
      readonly audience: string;
      readonly scope: string | undefined;
      readonly routePort: number | undefined;
    };

export interface Resources {
  readonly requests: { readonly cpu: string; readonly memory: string };
  readonly limits: { readonly cpu: string; readonly memory: string };
}

export interface InjectionRequest {
  readonly config: ConfigSource;
  readonly tokenAudience: string;
  readonly tokenExpirationSeconds: number;
  readonly identitySecret: string | undefined;
  readonly adminPort: number;
  readonly proxyPort: number;
  readonly proxyEnv: boolean;
  readonly resources: Resources;
}

export type Annotations = Readonly<Record<string, string>>;

/** A DNS-1123 subdomain (ConfigMap and Secret names). */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** host or host:port as an app names it (no scheme, no path). */
const HOST = /^(?=.{1,253}(:\d{1,5})?$)[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*(:\d{1,5})?$/;
/** Kubernetes resource quantities as the API accepts them (the common suffixes). */
const CPU = /^(\d+m|\d+(\.\d{1,3})?)$/;
const MEMORY = /^\d+(Ki|Mi|Gi|k|M|G)?$/;

/** The API server's own minimum for a projected token (TokenRequest). */
export const MIN_TOKEN_EXPIRATION_SECONDS = 600;
/** A day: a longer-lived ambient credential defeats the point of short-lived tokens. */
export const MAX_TOKEN_EXPIRATION_SECONDS = 86_400;

/**
 * Whether the pod asks for injection: the annotation, or the label the webhook's objectSelector
 * matches. Anything but "true"/"false" is refused, and so are a label and an annotation that
 * disagree (one of them is a mistake, and we cannot tell which).
 */
export function wantsInjection(annotations: Annotations, labels: Annotations): boolean | Refusal {
  const name = ANNOTATIONS.inject;
  const fromAnnotation = annotations[name];
  const fromLabel = labels[name];
  for (const [where, value] of [
    ['annotation', fromAnnotation],
    ['label', fromLabel],
  ] as const) {
    if (value !== undefined && value !== 'true' && value !== 'false') return new Refusal(name, `${where} must be "true" or "false", got "${value}"`);
  }
  if (fromAnnotation !== undefined && fromLabel !== undefined && fromAnnotation !== fromLabel) {
    return new Refusal(name, `the label says "${fromLabel}" and the annotation "${fromAnnotation}": remove one`);
  }
  return (fromAnnotation ?? fromLabel) === 'true';
}

/** Parse every injector annotation; the first problem found is the refusal. */
export function parseInjectionRequest(annotations: Annotations, defaults: InjectorDefaults): InjectionRequest | Refusal {
  const known = new Set<string>(Object.values(ANNOTATIONS));
  for (const key of Object.keys(annotations)) {
    if (key === STATUS_ANNOTATION || key === GENERATED_CONFIG_ANNOTATION) {
      return new Refusal(key, 'is written by the injector: remove it (the pod has no sts-sidecar container, so it was not injected)');
    }
    if (key.startsWith(PREFIX) && !known.has(key)) {
      return new Refusal(key, `unknown annotation (known: ${[...known].map((k) => k.slice(PREFIX.length)).join(', ')})`);
    }
  }
  try {
    const config = configSource(annotations, defaults);
    const adminPort = port(annotations, ANNOTATIONS.adminPort, defaults.adminPort);
    const proxyPort = port(annotations, ANNOTATIONS.proxyPort, defaults.proxyPort);
    if (proxyPort === adminPort) throw new Refusal(ANNOTATIONS.proxyPort, `${proxyPort} is also the admin port`);
    if (config.kind === 'generated' && config.routePort !== undefined && [adminPort, proxyPort].includes(config.routePort)) {
      throw new Refusal(ANNOTATIONS.routePort, `${config.routePort} is also the admin or proxy port`);
    }
    const tokenAudience = annotations[ANNOTATIONS.tokenAudience] ?? defaults.tokenAudience ?? (config.kind === 'generated' ? new URL(config.stsUrl).origin : undefined);
    if (!tokenAudience) {
      throw new Refusal(ANNOTATIONS.tokenAudience, 'is required with a ConfigMap config when the webhook has no defaults.tokenAudience (the STS decides which audience it accepts)');
    }
    nonBlank(ANNOTATIONS.tokenAudience, tokenAudience);
    const tokenExpirationSeconds = integer(annotations, ANNOTATIONS.tokenExpirationSeconds, defaults.tokenExpirationSeconds, MIN_TOKEN_EXPIRATION_SECONDS, MAX_TOKEN_EXPIRATION_SECONDS);
    const identitySecret = annotations[ANNOTATIONS.identitySecret];
    if (identitySecret !== undefined && !DNS_SUBDOMAIN.test(identitySecret)) throw new Refusal(ANNOTATIONS.identitySecret, `"${identitySecret}" is not a Secret name`);
    return {
      config,
      tokenAudience,
      tokenExpirationSeconds,
      identitySecret,
      adminPort,
      proxyPort,
      proxyEnv: boolean(annotations, ANNOTATIONS.proxyEnv, false),
      resources: resources(annotations, defaults),
    };
  } catch (err) {
    if (err instanceof Refusal) return err;
    throw err;
  }
}

function configSource(annotations: Annotations, defaults: InjectorDefaults): ConfigSource {
  const configMap = annotations[ANNOTATIONS.configMap];
  if (configMap !== undefined) {
    const other = GENERATED_CONFIG_ANNOTATIONS.find((a) => annotations[a] !== undefined);
    if (other) throw new Refusal(ANNOTATIONS.configMap, `conflicts with ${other}: the config comes from the ConfigMap, or is generated from annotations, not both`);
    if (!DNS_SUBDOMAIN.test(configMap)) throw new Refusal(ANNOTATIONS.configMap, `"${configMap}" is not a ConfigMap name`);
    return { kind: 'configMap', name: configMap };
  }
  const upstreamHost = annotations[ANNOTATIONS.upstreamHost];
  if (upstreamHost === undefined) {
    throw new Refusal(ANNOTATIONS.upstreamHost, `is required unless ${ANNOTATIONS.configMap} names a ConfigMap holding the whole config`);
  }
  if (!HOST.test(upstreamHost)) throw new Refusal(ANNOTATIONS.upstreamHost, `"${upstreamHost}" is not a host or host:port (no scheme, no path)`);
  const stsUrl = annotations[ANNOTATIONS.stsUrl] ?? defaults.stsUrl;
  if (stsUrl === undefined) throw new Refusal(ANNOTATIONS.stsUrl, 'is required when the webhook has no defaults.stsUrl');
  httpsUrl(ANNOTATIONS.stsUrl, stsUrl);
  const upstream = annotations[ANNOTATIONS.upstream] ?? `https://${upstreamHost}`;
  httpsUrl(ANNOTATIONS.upstream, upstream);
  const audience = annotations[ANNOTATIONS.audience] ?? new URL(upstream).origin;
  nonBlank(ANNOTATIONS.audience, audience);
  const scope = annotations[ANNOTATIONS.scope];
  if (scope !== undefined) nonBlank(ANNOTATIONS.scope, scope);
  const routePort = annotations[ANNOTATIONS.routePort] === undefined ? undefined : port(annotations, ANNOTATIONS.routePort, 0);
  return { kind: 'generated', stsUrl, upstreamHost, upstream, audience, scope, routePort };
}

function resources(annotations: Annotations, defaults: InjectorDefaults): Resources {
  const quantity = (name: string, fallback: string, pattern: RegExp): string => {
    const value = annotations[name] ?? fallback;
    if (!pattern.test(value)) throw new Refusal(name, `"${value}" is not a ${pattern === CPU ? 'CPU' : 'memory'} quantity (e.g. ${pattern === CPU ? '50m' : '128Mi'})`);
    return value;
  };
  const r = defaults.resources;
  const requests = { cpu: quantity(ANNOTATIONS.cpuRequest, r.requests.cpu, CPU), memory: quantity(ANNOTATIONS.memoryRequest, r.requests.memory, MEMORY) };
  const limits = { cpu: quantity(ANNOTATIONS.cpuLimit, r.limits.cpu, CPU), memory: quantity(ANNOTATIONS.memoryLimit, r.limits.memory, MEMORY) };
  // The API server refuses a request above its limit; say which annotation makes it so.
  if (cpuCores(requests.cpu) > cpuCores(limits.cpu)) {
    throw new Refusal(annotations[ANNOTATIONS.cpuRequest] !== undefined ? ANNOTATIONS.cpuRequest : ANNOTATIONS.cpuLimit, `CPU request ${requests.cpu} is above the limit ${limits.cpu}`);
  }
  if (memoryBytes(requests.memory) > memoryBytes(limits.memory)) {
    throw new Refusal(
      annotations[ANNOTATIONS.memoryRequest] !== undefined ? ANNOTATIONS.memoryRequest : ANNOTATIONS.memoryLimit,
      `memory request ${requests.memory} is above the limit ${limits.memory}`,
    );
  }
  return { requests, limits };
}

export function cpuCores(q: string): number {
  return q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q);
}

export function memoryBytes(q: string): number {
  const units: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 };
  const match = /^(\d+)(\D*)$/.exec(q);
  return Number(match?.[1]) * (units[match?.[2] ?? ''] ?? 1);
}

function port(annotations: Annotations, name: string, fallback: number): number {
  return integer(annotations, name, fallback, 1, 65535);
}

function integer(annotations: Annotations, name: string, fallback: number, min: number, max: number): number {
  const raw = annotations[name];
  if (raw === undefined) return fallback;
  if (!/^\d{1,10}$/.test(raw) || Number(raw) < min || Number(raw) > max) throw new Refusal(name, `"${raw}" is not an integer from ${min} to ${max}`);
  return Number(raw);
}

function boolean(annotations: Annotations, name: string, fallback: boolean): boolean {
  const raw = annotations[name];
  if (raw === undefined) return fallback;
  if (raw !== 'true' && raw !== 'false') throw new Refusal(name, `must be "true" or "false", got "${raw}"`);
  return raw === 'true';
}

function httpsUrl(name: string, value: string): void {
  // The sidecar refuses a plaintext STS unless told otherwise; a generated config never says so.
  if (!URL.canParse(value) || new URL(value).protocol !== 'https:') throw new Refusal(name, `"${value}" is not an https:// URL`);
}

function nonBlank(name: string, value: string): void {
  if (value.trim() === '') throw new Refusal(name, 'must not be empty');
}
