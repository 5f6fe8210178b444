/**
 * What the injector adds to a pod, as plain Kubernetes objects: the native sidecar, its
 * volumes, and the proxy variables for the app. The same paths and names as k8s/base/, so a
 * ConfigMap written for the hand-made manifests works unchanged with the injector.
 */
import type { InjectionRequest } from './annotations.js';
import type { WebhookConfig } from './webhook-config.js';

export const SIDECAR_NAME = 'sts-sidecar';
/** A container port name: at most 15 characters (IANA service name), unique in the pod. */
export const ADMIN_PORT_NAME = 'sts-admin';

export const MOUNTS = {
  config: { volume: 'sts-sidecar-config', path: '/etc/sts-sidecar', file: 'config.yaml' },
  token: { volume: 'sts-sidecar-token', path: '/var/run/secrets/tokens', file: 'sts-token' },
  identity: { volume: 'sts-sidecar-identity', path: '/var/run/secrets/workload-identity' },
  tmp: { volume: 'sts-sidecar-tmp', path: '/tmp' },
} as const;

export type Obj = Record<string, unknown>;

/** The image's user (Dockerfile: USER 65532:65532). */
const SIDECAR_UID = 65532;

export function sidecarContainer(request: InjectionRequest, config: WebhookConfig): Obj {
  const probe = (path: string, extra: Obj): Obj => ({ httpGet: { path, port: request.adminPort }, ...extra });
  return {
    name: SIDECAR_NAME,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    // A native sidecar (Kubernetes 1.29+): started before the app, stopped after it, and it
    // never keeps a Job from completing.
    restartPolicy: 'Always',
    args: ['run', '--config', `${MOUNTS.config.path}/${MOUNTS.config.file}`],
    ports: [{ name: ADMIN_PORT_NAME, containerPort: request.adminPort, protocol: 'TCP' }],
    // The kubelet starts the app containers only once this passes: /readyz says every eager
    // route holds a token, so the app's first request gets one. 60 x 1 s covers a slow STS.
    startupProbe: probe('/readyz', { periodSeconds: 1, failureThreshold: 60 }),
    readinessProbe: probe('/readyz', { periodSeconds: 5, failureThreshold: 2 }),
    // Alive while the process serves: an STS outage must not restart it.
    livenessProbe: probe('/healthz', { periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 }),
    resources: {
      requests: { ...request.resources.requests },
      limits: { ...request.resources.limits },
    },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: SIDECAR_UID,
      runAsGroup: SIDECAR_UID,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: MOUNTS.config.volume, mountPath: MOUNTS.config.path, readOnly: true },
      { name: MOUNTS.token.volume, mountPath: MOUNTS.token.path, readOnly: true },
      ...(request.identitySecret ? [{ name: MOUNTS.identity.volume, mountPath: MOUNTS.identity.path, readOnly: true }] : []),
      // The one writable path on a read-only root: os.tmpdir().
      { name: MOUNTS.tmp.volume, mountPath: MOUNTS.tmp.path },
    ],
  };
}

/** `generatedConfigAnnotation`: the annotation a downward-API volume reads the config from. */
export function sidecarVolumes(request: InjectionRequest, generatedConfigAnnotation: string): Obj[] {
  const config =
    request.config.kind === 'configMap'
      ? { name: MOUNTS.config.volume, configMap: { name: request.config.name } }
      : {
          name: MOUNTS.config.volume,
          downwardAPI: {
            items: [{ path: MOUNTS.config.file, fieldRef: { fieldPath: `metadata.annotations['${generatedConfigAnnotation}']` } }],
          },
        };
  return [
    config,
    // The ambient credential: a token for the STS's audience only (never the API server's),
    // rotated by the kubelet at 80 % of its life; mounted into the sidecar alone.
    {
      name: MOUNTS.token.volume,
      projected: {
        sources: [{ serviceAccountToken: { audience: request.tokenAudience, expirationSeconds: request.tokenExpirationSeconds, path: MOUNTS.token.file } }],
      },
    },
    ...(request.identitySecret
      ? [
          {
            name: MOUNTS.identity.volume,
            // 0444 (decimal here: YAML 1.1 and 1.2 read "0444" differently). Only the sidecar
            // mounts this volume, and a pod without fsGroup leaves the files owned by root, so
            // group-only modes would hide the key from uid 65532.
            secret: { secretName: request.identitySecret, defaultMode: 292 },
          },
        ]
      : []),
    { name: MOUNTS.tmp.volume, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
  ];
}

/**
 * The proxy variables in both spellings: curl reads only lowercase http_proxy (the uppercase
 * one is ignored for http:// because of CGI's HTTP_PROXY header), other clients read either.
 */
export function proxyEnv(request: InjectionRequest, config: WebhookConfig): Array<{ name: string; value: string }> {
  const proxy = `http://127.0.0.1:${request.proxyPort}`;
  const noProxy = config.defaults.noProxy;
  return [
    { name: 'HTTP_PROXY', value: proxy },
    { name: 'http_proxy', value: proxy },
    { name: 'HTTPS_PROXY', value: proxy },
    { name: 'https_proxy', value: proxy },
    { name: 'NO_PROXY', value: noProxy },
    { name: 'no_proxy', value: noProxy },
  ];
}
