/**
 * The files and secrets a config names, as a table of key path -> kind (issue 13), so a new
 * PEM or secret setting is one line here. `[]` walks each item of a list, `*` each value of
 * a mapping (`stsProfiles.*.ca`). The config is walked as plain data and any shape it does
 * not expect is skipped: the same table serves configs with settings this file predates.
 */

/**
 * certificate: a PEM chain whose first certificate is a leaf the sidecar presents (expired is a problem).
 * trust: a PEM bundle of trust anchors (an expired one is a note).
 * private-key: a PEM private key file; `matches` names the sibling key of its certificate.
 * token: a secret source (file / env / value) holding a token, checked as a JWT when it is one.
 * secret: a secret source that must be readable and not empty.
 * signing-key: a secret source holding a PEM private key.
 */
export type FileKind = 'certificate' | 'trust' | 'private-key' | 'token' | 'secret' | 'signing-key';

export interface FileRule {
  readonly path: string;
  readonly kind: FileKind;
  /** private-key: the sibling key (same parent) holding the certificate this key must match. */
  readonly matches?: string;
}

/** Per STS profile: the keys of `sts` that name files, under a prefix (`sts`, `stsProfiles.*`). */
function stsFiles(prefix: string): FileRule[] {
  return [
    { path: `${prefix}.ca`, kind: 'trust' },
    { path: `${prefix}.clientAuth.clientSecret`, kind: 'secret' },
    { path: `${prefix}.clientAuth.key`, kind: 'signing-key' },
    { path: `${prefix}.actorToken`, kind: 'token' },
  ];
}

export const CONFIG_FILES: readonly FileRule[] = [
  { path: 'identity.cert', kind: 'certificate' },
  { path: 'identity.key', kind: 'private-key', matches: 'cert' },
  { path: 'identity.ca', kind: 'trust' },
  { path: 'subjectToken', kind: 'token' },
  ...stsFiles('sts'),
  ...stsFiles('stsProfiles.*'),
  { path: 'stsProfiles.*.subjectToken', kind: 'token' },
  { path: 'routes[].ca', kind: 'trust' },
  { path: 'routes[].subjectToken', kind: 'token' },
  { path: 'forward.ca.cert', kind: 'certificate' },
  { path: 'forward.ca.key', kind: 'private-key', matches: 'cert' },
];

export interface FoundSetting {
  /** The concrete key path, `routes[2].ca`. */
  readonly path: string;
  readonly value: unknown;
  /** The mapping holding it (for `matches`). */
  readonly parent: Record<string, unknown>;
  /** The concrete key path of the parent, '' at the top. */
  readonly parentPath: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `routes[].ca` -> ['routes', '[]', 'ca']. */
function segments(pattern: string): string[] {
  return pattern.split('.').flatMap((part) => (part.endsWith('[]') ? [part.slice(0, -2), '[]'] : [part]));
}

const join = (base: string, key: string): string => (base ? `${base}.${key}` : key);

/** Every setting of `config` the pattern names that is present (undefined values are skipped). */
export function findSettings(config: unknown, pattern: string): FoundSetting[] {
  const found: FoundSetting[] = [];
  const walk = (node: unknown, path: string, rest: string[]): void => {
    const [head, ...tail] = rest;
    if (head === '[]') {
      if (Array.isArray(node)) node.forEach((item, i) => walk(item, `${path}[${i}]`, tail));
      return;
    }
    if (!isRecord(node) || head === undefined) return;
    const keys = head === '*' ? Object.keys(node) : [head];
    for (const key of keys) {
      const value = node[key];
      if (value === undefined) continue;
      if (tail.length === 0) found.push({ path: join(path, key), value, parent: node, parentPath: path });
      else walk(value, join(path, key), tail);
    }
  };
  walk(config, '', segments(pattern));
  return found;
}
