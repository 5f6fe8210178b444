/**
 * `admission.k8s.io/v1` AdmissionReview in and out (Kubernetes "Dynamic Admission Control":
 * the response echoes `request.uid`, says `allowed`, and a mutation is a base64 RFC 6902
 * patch with `patchType: JSONPatch`). Parsing the review and answering it are separate from
 * the mutation itself (mutate.ts), which sees only the pod, its namespace and the config.
 *
 * `dryRun: true` gets the same answer: the injector has no side effects to skip (it creates
 * nothing, which is why the webhook is registered with `sideEffects: None`).
 */
import { mutatePod, type MutationResult } from './mutate.js';
import type { WebhookConfig } from './webhook-config.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** The request fields the injector reads; the API server sends more (userInfo, options, ...). */
export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  readonly resource: { readonly group: string; readonly version: string; readonly resource: string };
  readonly subResource: string | undefined;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  readonly operation: string;
  readonly object: unknown;
  readonly dryRun: boolean;
}

/** metav1.Status as an AdmissionResponse carries it. */
export interface AdmissionStatus {
  readonly status: 'Failure';
  readonly code: number;
  readonly reason: 'BadRequest';
  readonly message: string;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: 'JSONPatch';
  readonly patch?: string;
  readonly status?: AdmissionStatus;
  readonly warnings?: string[];
}

export interface AdmissionReviewResponse {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse;
}

/** A body that is not an AdmissionReview v1 request: answered with HTTP 400, not a review. */
export class AdmissionReviewError extends Error {}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export function parseAdmissionReview(body: unknown): AdmissionRequest {
  if (!isObj(body)) throw new AdmissionReviewError('not a JSON object');
  if (body['apiVersion'] !== ADMISSION_API_VERSION || body['kind'] !== 'AdmissionReview') {
    // The webhook is registered with admissionReviewVersions: ["v1"] only (k8s/injector/).
    throw new AdmissionReviewError(`expected apiVersion ${ADMISSION_API_VERSION}, kind AdmissionReview`);
  }
  const request = body['request'];
  if (!isObj(request)) throw new AdmissionReviewError('no request');
  const uid = str(request['uid']);
  if (!uid) throw new AdmissionReviewError('request.uid is missing');
  const kind = isObj(request['kind']) ? request['kind'] : {};
  const resource = isObj(request['resource']) ? request['resource'] : {};
  return {
    uid,
    kind: { group: str(kind['group']) ?? '', version: str(kind['version']) ?? '', kind: str(kind['kind']) ?? '' },
    resource: { group: str(resource['group']) ?? '', version: str(resource['version']) ?? '', resource: str(resource['resource']) ?? '' },
    subResource: str(request['subResource']),
    namespace: str(request['namespace']),
    name: str(request['name']),
    operation: str(request['operation']) ?? '',
    object: request['object'],
    dryRun: request['dryRun'] === true,
  };
}

export interface ReviewOutcome {
  readonly response: AdmissionReviewResponse;
  /** What was decided, for the log line: `ignored` for anything that is not a pod CREATE. */
  readonly result: MutationResult | { readonly kind: 'ignored' };
}

/** The answer to one review; never throws for a well-formed request. */
export function reviewPod(request: AdmissionRequest, config: WebhookConfig): ReviewOutcome {
  const isPodCreate =
    request.operation === 'CREATE' && request.resource.group === '' && request.resource.resource === 'pods' && !request.subResource && request.kind.kind === 'Pod';
  if (!isPodCreate) return { response: wrap({ uid: request.uid, allowed: true }), result: { kind: 'ignored' } };
  const result = mutatePod(request.object, request.namespace, config);
  switch (result.kind) {
    case 'skip':
      return { response: wrap({ uid: request.uid, allowed: true }), result };
    case 'refuse':
      return {
        response: wrap({ uid: request.uid, allowed: false, status: { status: 'Failure', code: 400, reason: 'BadRequest', message: result.refusal.message } }),
        result,
      };
    case 'patch':
      return {
        response: wrap({
          uid: request.uid,
          allowed: true,
          patchType: 'JSONPatch',
          patch: Buffer.from(JSON.stringify(result.patch)).toString('base64'),
        }),
        result,
      };
  }
}

function wrap(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}
