/**
 * Whether a text shows a secret in any form a reader could undo, checked with decoders
 * independent of the scrubber in src/log/redact.ts (issue 10 item 15; issue 13 for /status).
 */
import assert from 'node:assert/strict';

const formEncode = (value: string) => new URLSearchParams([['', value]]).toString().slice(1);

/**
 * Whether `text` shows `secret` in any form a reader could undo: as is, percent- or
 * form-encoded (either hex case), or inside any run of base64 / base64url characters
 * decoded at each of the four character alignments.
 */
export function exposes(text: string, secret: string): boolean {
  const forms = [secret, encodeURIComponent(secret), formEncode(secret)].flatMap((f) => [f, f.replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase())]);
  if (forms.some((f) => text.includes(f))) return true;
  for (const run of text.match(/[A-Za-z0-9+/_-]{8,}/g) ?? []) {
    for (let offset = 0; offset < 4; offset++) {
      const decoded = Buffer.from(run.slice(offset).replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('latin1');
      if (forms.some((f) => decoded.includes(f))) return true;
    }
  }
  return false;
}

export function assertNoSecret(where: string, text: string, secrets: Record<string, string>): void {
  for (const [name, secret] of Object.entries(secrets)) assert.ok(!exposes(text, secret), `${where} shows the ${name}: ${text}`);
}
