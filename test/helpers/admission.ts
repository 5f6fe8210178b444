/**
 * AdmissionReview requests shaped as kube-apiserver sends them to a mutating webhook
 * (admission.k8s.io/v1; the field set of k8s.io/api/admission/v1 AdmissionRequest), and the
 * reading of the answers: the base64 JSONPatch decoded and applied with a JSON Patch library
 * (fast-json-patch, RFC 6902) no one here wrote.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { repoPath, type Obj } from './manifests.js';

export function fixturePod(name = 'pod-from-replicaset.json'): Obj {
  return JSON.parse(readFileSync(repoPath('test', 'fixtures', 'inject', name), 'utf8')) as Obj;
}

export interface ReviewOptions {
  readonly namespace?: string;
  readonly dryRun?: boolean;
  readonly uid?: string;
  readonly operation?: 'CREATE' | 'UPDATE';
}

/** What the API server posts for a pod CREATE (by the ReplicaSet controller, as for a Deployment's pods). */
export function admissionReview(pod: Obj, options: ReviewOptions = {}): Obj {
  const namespace = options.namespace ?? String((pod['metadata'] as Obj | undefined)?.['namespace'] ?? 'default');
  const gvk = { group: '', version: 'v1', kind: 'Pod' };
  const gvr = { group: '', version: 'v1', resource: 'pods' };
  const operation = options.operation ?? 'CREATE';
  return {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: options.uid ?? randomUUID(),
      kind: gvk,
      resource: gvr,
      requestKind: gvk,
      requestResource: gvr,
      // A pod made from generateName has no name yet at admission: the field is omitted.
      ...(typeof (pod['metadata'] as Obj | undefined)?.['name'] === 'string' ? { name: (pod['metadata'] as Obj)['name'] } : {}),
      namespace,
      operation,
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: 'a1b7c1a0-3c5e-4f61-9c43-0f5b2f4c8e21',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: options.dryRun ?? false,
      options: { kind: operation === 'CREATE' ? 'CreateOptions' : 'UpdateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
}

export interface DecodedResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: string;
  readonly patch?: Operation[];
  readonly status?: { code?: number; message?: string; reason?: string; status?: string };
  readonly raw: Obj;
}

/** The response part of an AdmissionReview answer, its patch base64-decoded. */
export function decodeResponse(review: unknown): DecodedResponse {
  const body = review as Obj;
  if (body['apiVersion'] !== 'admission.k8s.io/v1' || body['kind'] !== 'AdmissionReview') throw new Error('not an AdmissionReview v1');
  const response = body['response'] as Obj;
  const patch = typeof response['patch'] === 'string' ? (JSON.parse(Buffer.from(response['patch'], 'base64').toString('utf8')) as Operation[]) : undefined;
  return {
    uid: String(response['uid']),
    allowed: response['allowed'] === true,
    ...(typeof response['patchType'] === 'string' ? { patchType: response['patchType'] } : {}),
    ...(patch ? { patch } : {}),
    ...(response['status'] ? { status: response['status'] as DecodedResponse['status'] } : {}),
    raw: response,
  };
}

/** RFC 6902 with validation: every operation must apply to the document as it is. */
export function applyJsonPatch(document: Obj, patch: readonly Operation[]): Obj {
  return fastJsonPatch.applyPatch(structuredClone(document), [...patch], true, true).newDocument as Obj;
}
