/**
 * Small replies every local server of the package sends (admin, endpoints, the reference
 * STS, the demo): a whole JSON or text body with its length. A reply to a response that
 * already started, or to a peer that is gone, is dropped: there is no one left to tell.
 */
import type { ServerResponse } from 'node:http';

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
  contentType = 'application/json',
): void {
  sendText(res, status, JSON.stringify(body), headers, contentType);
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Readonly<Record<string, string>> = {},
  contentType = 'text/plain; charset=utf-8',
): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { ...headers, 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
