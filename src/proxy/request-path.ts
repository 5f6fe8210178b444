/**
 * The one reading of an app's request target that the sidecar both matches routes on and
 * forwards (issue 10 item 7). Matching a raw path and forwarding it unchanged let
 * `/api/../admin` or `/api/%2e%2e/admin` carry the `/api` route's token to `/admin`, and
 * `/../x` escape an upstream's base path: the upstream resolved the dot-segments the sidecar
 * had not. Here they are resolved first (RFC 3986 5.2.4), so what the sidecar matched is what
 * the upstream reads, whatever it decodes.
 *
 * - `%2e` / `%2E` count as `.` (RFC 3986 2.3: an encoded unreserved character is the same
 *   character), so `/api/%2e%2e/admin` becomes `/admin`;
 * - a segment that would hold a dot-segment once an upstream decodes `%2f`, `%5c` or `%3b`,
 *   or splits on a raw `\` (Windows and some Java servers) or strips `;params` (Tomcat), is
 *   refused: its meaning depends on who reads it (`/api/..%2fadmin`, `/api/..\admin`,
 *   `/api/..;/admin`);
 * - NUL and other control characters, raw or encoded, and a raw `#` are refused (RFC 9112 3.2
 *   has no fragment in a request target; an upstream would cut the path there);
 * - every other segment is forwarded byte for byte (a Google Storage object `o/dir%2Fobject`
 *   keeps its `%2F`), and the query string is kept as sent.
 */
import { PathRejectedError } from '../errors.js';

/** Anything that can make a path mean something else to another reader; most paths have none. */
const NEEDS_A_CLOSER_LOOK = /[.%\\#\x00-\x1f\x7f]/;
const CONTROL = /[\x00-\x1f\x7f]|%(?:[01][0-9a-f]|7f)/i;
const ENCODED_SEPARATOR = /%(?:2e|2f|5c|3b)/gi;
const DECODED: Readonly<Record<string, string>> = { '2e': '.', '2f': '/', '5c': '\\', '3b': ';' };

type SegmentKind = 'plain' | 'dot' | 'dot-dot';

/**
 * The origin-form target (`/path?query`) to match and forward: dot-segments removed, the
 * query untouched. Returns `target` itself when nothing needed changing. Throws
 * PathRejectedError for a path that is not origin-form or that readers could disagree on.
 */
export function normalizeRequestTarget(target: string): string {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  if (!path.startsWith('/')) throw new PathRejectedError('the request target must be an absolute path (RFC 9112 3.2.1)');
  if (!NEEDS_A_CLOSER_LOOK.test(path)) return target;
  if (CONTROL.test(path)) throw new PathRejectedError('the request path carries a control character');
  if (path.includes('#')) throw new PathRejectedError('the request path carries a fragment (RFC 9112 3.2)');
  const normalized = removeDotSegments(path);
  if (normalized === path) return target;
  return q === -1 ? normalized : normalized + target.slice(q);
}

/** RFC 3986 5.2.4 on whole segments, each classified as its upstream could read it. */
function removeDotSegments(path: string): string {
  const segments = path.split('/');
  const out: string[] = [];
  let changed = false;
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const kind = classify(segment);
    if (kind === 'plain') {
      out.push(segment);
      continue;
    }
    changed = true;
    if (kind === 'dot-dot') out.pop();
    // "/a/.." is "/", "/a/." is "/a/": a trailing dot-segment leaves the directory it names.
    if (i === segments.length - 1) out.push('');
  }
  return changed ? `/${out.join('/')}` : path;
}

function classify(segment: string): SegmentKind {
  if (!/[.%\\]/.test(segment)) return 'plain';
  const decoded = segment.replace(ENCODED_SEPARATOR, (m) => DECODED[m.slice(1).toLowerCase()]!);
  const parts = decoded.split(/[/\\]/);
  if (parts.length > 1) {
    if (parts.some(isDotSegmentWithParams)) throw new PathRejectedError('an encoded slash or a backslash in the request path hides a dot-segment');
    return 'plain';
  }
  if (decoded === '.') return 'dot';
  if (decoded === '..') return 'dot-dot';
  if (isDotSegmentWithParams(decoded)) throw new PathRejectedError('a dot-segment with path parameters (";") in the request path');
  return 'plain';
}

/** `.`, `..`, or either followed by `;params` (read as the bare dot-segment by Tomcat and others). */
function isDotSegmentWithParams(part: string): boolean {
  const bare = part.split(';', 1)[0];
  return bare === '.' || bare === '..';
}
