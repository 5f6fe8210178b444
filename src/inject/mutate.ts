/**
 * The pod mutation as a pure function: a pod (or a pod template), its namespace and the
 * webhook's config in, RFC 6902 JSON Patch operations out, or the reason for doing nothing,
 * or a refusal naming the annotation at fault. No I/O, no clock: the same pod always gets
 * the same answer, which is what makes `dryRun` and reinvocation safe.
 *
 * Only `add` operations are emitted, each on a path that either does not exist yet (a whole
 * list or map) or appends (`/-`) or inserts, so the patch applies to exactly the object it
 * was computed from (RFC 6902 section 4.1).
 */
import {
  ANNOTATIONS,
  GENERATED_CONFIG_ANNOTATION,
  Refusal,
  STATUS_ANNOTATION,
  parseInjectionRequest,
  wantsInjection,
  type Annotations,
  type InjectionRequest,
} from './annotations.js';
import { generatedConfigText } from './generated-config.js';
import { ADMIN_PORT_NAME, MOUNTS, SIDECAR_NAME, proxyEnv, sidecarContainer, sidecarVolumes, type Obj } from './pod-parts.js';
import { isExcludedNamespace, type WebhookConfig } from './webhook-config.js';
import { VERSION } from '../version.js';

export interface AddOperation {
  readonly op: 'add';
  readonly path: string;
  readonly value: unknown;
}

export type SkipReason = 'not-requested' | 'excluded-namespace' | 'already-injected';

export type MutationResult =
  | { readonly kind: 'patch'; readonly patch: AddOperation[] }
  | { readonly kind: 'skip'; readonly reason: SkipReason }
  | { readonly kind: 'refuse'; readonly refusal: Refusal };

/** RFC 6901 section 3: `~` and `/` in a reference token. */
export function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const listOf = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);
const stringMap = (v: unknown): Record<string, string> =>
  isObj(v) ? Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};

export function mutatePod(pod: unknown, namespace: string | undefined, config: WebhookConfig): MutationResult {
  if (!isObj(pod)) return { kind: 'refuse', refusal: new Refusal(ANNOTATIONS.inject, 'the object is not a pod') };
  const metadata = isObj(pod['metadata']) ? pod['metadata'] : {};
  const annotations: Annotations = stringMap(metadata['annotations']);
  const spec = isObj(pod['spec']) ? pod['spec'] : {};
  if (isExcludedNamespace(config, namespace)) return { kind: 'skip', reason: 'excluded-namespace' };
  const wanted = wantsInjection(annotations, stringMap(metadata['labels']));
  if (wanted instanceof Refusal) return { kind: 'refuse', refusal: wanted };
  if (!wanted) return { kind: 'skip', reason: 'not-requested' };
  // Idempotence: a pod that already has the sidecar (injected before, by a reinvocation or
  // `inject --file`, or written by hand as in k8s/base/) is left as it is.
  if ([...listOf(spec['initContainers']), ...listOf(spec['containers'])].some((c) => c['name'] === SIDECAR_NAME)) {
    return { kind: 'skip', reason: 'already-injected' };
  }
  const request = parseInjectionRequest(annotations, config.defaults);
  if (request instanceof Refusal) return { kind: 'refuse', refusal: request };
  try {
    checkConflicts(spec, request);
    return { kind: 'patch', patch: operations(metadata, spec, request, config) };
  } catch (err) {
    if (err instanceof Refusal) return { kind: 'refuse', refusal: err };
    throw err;
  }
}

/** What the pod already has that the injection would collide with. */
function checkConflicts(spec: Obj, request: InjectionRequest): void {
  const ours = new Set<string>(Object.values(MOUNTS).map((m) => m.volume));
  const clash = listOf(spec['volumes']).find((v) => ours.has(String(v['name'])));
  if (clash) throw new Refusal(ANNOTATIONS.inject, `the pod already has a volume named "${String(clash['name'])}", which the injector adds`);
  const ports: Array<[string, number | undefined]> = [
    [ANNOTATIONS.adminPort, request.adminPort],
    [ANNOTATIONS.proxyPort, request.proxyPort],
    [ANNOTATIONS.routePort, request.config.kind === 'generated' ? request.config.routePort : undefined],
  ];
  // Containers of a pod share one network namespace: two listeners cannot have one port.
  for (const container of [...listOf(spec['initContainers']), ...listOf(spec['containers'])]) {
    for (const p of listOf(container['ports'])) {
      if (p['name'] === ADMIN_PORT_NAME) throw new Refusal(ANNOTATIONS.inject, `container "${String(container['name'])}" already has a port named "${ADMIN_PORT_NAME}"`);
      const hit = ports.find(([, port]) => port !== undefined && p['containerPort'] === port);
      if (hit) throw new Refusal(hit[0], `port ${hit[1]} is also container "${String(container['name'])}"'s port; choose another`);
    }
  }
}

function operations(metadata: Obj, spec: Obj, request: InjectionRequest, config: WebhookConfig): AddOperation[] {
  const ops: AddOperation[] = [];
  const added: Record<string, string> = { [STATUS_ANNOTATION]: `injected by sts-sidecar ${VERSION}` };
  if (request.config.kind === 'generated') added[GENERATED_CONFIG_ANNOTATION] = generatedConfigText(request, request.config);
  if (!isObj(metadata['annotations'])) {
    // The pod asked by label only: it may have no annotations map at all.
    ops.push({ op: 'add', path: '/metadata/annotations', value: added });
  } else {
    for (const [key, value] of Object.entries(added)) ops.push({ op: 'add', path: `/metadata/annotations/${pointerToken(key)}`, value });
  }
  // First among the init containers, so the regular ones that follow can already use tokens.
  const sidecar = sidecarContainer(request, config);
  ops.push(Array.isArray(spec['initContainers']) ? { op: 'add', path: '/spec/initContainers/0', value: sidecar } : { op: 'add', path: '/spec/initContainers', value: [sidecar] });
  const volumes = sidecarVolumes(request, GENERATED_CONFIG_ANNOTATION);
  if (Array.isArray(spec['volumes'])) for (const v of volumes) ops.push({ op: 'add', path: '/spec/volumes/-', value: v });
  else ops.push({ op: 'add', path: '/spec/volumes', value: volumes });
  if (request.proxyEnv) ops.push(...proxyEnvOperations(spec, request, config));
  return ops;
}

/**
 * HTTP_PROXY & co. on every app container (init containers run before the app and are left
 * alone). A variable the app already sets to the same value is kept; one it sets otherwise
 * is a refusal: overriding would break what the app meant, keeping it would silently send
 * the app's traffic past the sidecar, and either way nobody would be told.
 */
function proxyEnvOperations(spec: Obj, request: InjectionRequest, config: WebhookConfig): AddOperation[] {
  const wanted = proxyEnv(request, config);
  const ops: AddOperation[] = [];
  listOf(spec['containers']).forEach((container, i) => {
    const env = listOf(container['env']);
    const missing = wanted.filter((w) => {
      const existing = env.find((e) => e['name'] === w.name);
      if (existing === undefined) return true;
      if (existing['value'] === w.value && existing['valueFrom'] === undefined) return false;
      throw new Refusal(ANNOTATIONS.proxyEnv, `container "${String(container['name'])}" already sets ${w.name} to something else; remove it or drop the annotation`);
    });
    if (missing.length === 0) return;
    if (Array.isArray(container['env'])) for (const e of missing) ops.push({ op: 'add', path: `/spec/containers/${i}/env/-`, value: e });
    else ops.push({ op: 'add', path: `/spec/containers/${i}/env`, value: missing });
  });
  return ops;
}
