/** Shared by every metrics file of admin/: the namespace and the bounded status label. */

export const METRIC_PREFIX = 'sts_sidecar_';

/** `2xx`, `4xx`, ...: a bounded label for an HTTP status. */
export function statusClass(code: number): string {
  if (code >= 100 && code < 600) return `${Math.floor(code / 100)}xx`;
  return 'other';
}
