/**
 * `inject --file`: the pod inside a Pod or a workload's template, and applying the injector's
 * own patch to it without a cluster. The patch holds only `add` operations (mutate.ts), so a
 * small RFC 6902 section 4.1 `add` is all this needs; the tests apply the same patches with a
 * full JSON Patch library.
 */
import { mutatePod, type AddOperation, type MutationResult } from './mutate.js';
import type { Obj } from './pod-parts.js';
import type { WebhookConfig } from './webhook-config.js';

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Where the pod is in each kind that carries one (RFC 6901 pointer from the object's root). */
const POD_AT: Readonly<Record<string, string>> = {
  Pod: '',
  Deployment: '/spec/template',
  StatefulSet: '/spec/template',
  DaemonSet: '/spec/template',
  ReplicaSet: '/spec/template',
  Job: '/spec/template',
  CronJob: '/spec/jobTemplate/spec/template',
};

export function podPointer(object: Obj): string | undefined {
  return POD_AT[String(object['kind'])];
}

function resolvePointer(doc: unknown, pointer: string): unknown {
  let node = doc;
  for (const token of pointer.split('/').slice(1)) {
    const key = token.replace(/~1/g, '/').replace(/~0/g, '~');
    node = Array.isArray(node) ? node[Number(key)] : isObj(node) ? node[key] : undefined;
  }
  return node;
}

/** RFC 6902 section 4.1 `add`, in place: a map member is set, an array index inserts, `-` appends. */
export function applyAdd(doc: Obj, ops: readonly AddOperation[]): void {
  for (const { path, value } of ops) {
    const at = path.lastIndexOf('/');
    const parent = resolvePointer(doc, path.slice(0, at));
    const key = path.slice(at + 1).replace(/~1/g, '/').replace(/~0/g, '~');
    const copy = structuredClone(value);
    if (Array.isArray(parent)) {
      const index = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(index) || index < 0 || index > parent.length) throw new Error(`JSON Patch add: bad index in ${path}`);
      parent.splice(index, 0, copy);
    } else if (isObj(parent)) {
      parent[key] = copy;
    } else {
      throw new Error(`JSON Patch add: no parent for ${path}`);
    }
  }
}

export type WorkloadResult = MutationResult & { readonly kindName: string };

/**
 * Mutates `object` in place when it carries a pod that asks for injection. Objects that carry
 * no pod (a Service, a ConfigMap) come back as skipped, untouched.
 */
export function injectWorkload(object: Obj, config: WebhookConfig, namespace?: string): WorkloadResult {
  const kindName = String(object['kind']);
  const pointer = podPointer(object);
  const pod = pointer === undefined ? undefined : resolvePointer(object, pointer);
  if (pointer === undefined || !isObj(pod)) return { kind: 'skip', reason: 'not-requested', kindName };
  const ns = namespace ?? (isObj(object['metadata']) && typeof object['metadata']['namespace'] === 'string' ? object['metadata']['namespace'] : undefined);
  const result = mutatePod(pod, ns, config);
  if (result.kind === 'patch') applyAdd(pod, result.patch);
  return { ...result, kindName };
}
