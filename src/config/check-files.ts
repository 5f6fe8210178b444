/**
 * The files and secrets a valid config names, opened and checked (issue 13): PEM
 * certificates parse, keys parse and match their certificate, token files are readable and
 * hold an unexpired JWT when they should, secret files are readable, env sources are set.
 * Every problem is collected, so one `check-config --files` run (or one reload attempt)
 * shows them all, each at its key path. Messages are our own words: never a token, a key
 * or a secret's text, and no parser message that could quote one.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { TOKEN_TYPE } from '../oauth/urns.js';
import type { Environment } from './env-substitution.js';
import { CONFIG_FILES, findSettings, type FileRule, type FoundSetting } from './file-rules.js';
import type { ConfigProblem } from './issue-messages.js';
import { decodeJwtUnverified, looksLikeJwt, numericDate, relativeTime } from './jwt-inspect.js';

export interface FileCheckOptions {
  /** Where `env` sources are read (default: this process's environment). */
  readonly env?: Environment;
  readonly now?: number;
  /** A token or certificate expiring within this many seconds gets a note (default 600). */
  readonly nearExpirySeconds?: number;
  /** The table of settings to check (default CONFIG_FILES). */
  readonly rules?: readonly FileRule[];
}

export interface FileCheckReport {
  /** What would stop the sidecar (or a reload) from using the config. */
  readonly problems: ConfigProblem[];
  /** Worth knowing, not fatal: a token or certificate close to its expiry. */
  readonly notes: ConfigProblem[];
}

/** Only the problems: what a reload must refuse the config for. */
export async function checkConfigFiles(config: unknown, options: FileCheckOptions = {}): Promise<ConfigProblem[]> {
  return (await inspectConfigFiles(config, options)).problems;
}

const JWT_TYPES: ReadonlySet<string> = new Set([TOKEN_TYPE.jwt, TOKEN_TYPE.idToken]);
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export async function inspectConfigFiles(config: unknown, options: FileCheckOptions = {}): Promise<FileCheckReport> {
  const report: FileCheckReport = { problems: [], notes: [] };
  const ctx: Ctx = {
    env: options.env ?? process.env,
    now: options.now ?? Date.now(),
    nearMs: (options.nearExpirySeconds ?? 600) * 1000,
    problem: (path, problem) => void report.problems.push({ path, problem }),
    note: (path, problem) => void report.notes.push({ path, problem }),
    leaves: new Map(),
  };
  for (const rule of options.rules ?? CONFIG_FILES) {
    for (const setting of findSettings(config, rule.path)) await checkSetting(rule, setting, ctx);
  }
  return report;
}

interface Ctx {
  readonly env: Environment;
  readonly now: number;
  readonly nearMs: number;
  problem(path: string, problem: string): void;
  note(path: string, problem: string): void;
  /** The leaf certificate parsed at each key path, for the key-matches-certificate check. */
  readonly leaves: Map<string, X509Certificate>;
}

async function checkSetting(rule: FileRule, setting: FoundSetting, ctx: Ctx): Promise<void> {
  const { path, value } = setting;
  switch (rule.kind) {
    case 'certificate':
    case 'trust': {
      if (typeof value !== 'string') return;
      const text = await readText(value, path, ctx);
      if (text !== undefined) checkCertificates(text, path, rule.kind, ctx);
      return;
    }
    case 'private-key': {
      if (typeof value !== 'string') return;
      const text = await readText(value, path, ctx);
      const key = text === undefined ? undefined : parsePrivateKey(text, path, ctx);
      const certPath = rule.matches === undefined ? undefined : setting.parentPath ? `${setting.parentPath}.${rule.matches}` : rule.matches;
      const leaf = certPath === undefined ? undefined : ctx.leaves.get(certPath);
      if (key && leaf && !matches(leaf, key)) {
        ctx.problem(path, `does not match the certificate of ${certPath} (subject "${leaf.subject.replace(/\n/g, ', ')}")`);
      }
      return;
    }
    default: {
      const secret = await readSecret(value, path, ctx);
      if (!secret) return;
      if (rule.kind === 'signing-key') parsePrivateKey(secret.text, secret.path, ctx);
      if (rule.kind === 'token') checkToken(secret.text, secret.path, typeOf(value), ctx);
    }
  }
}

async function readText(file: string, path: string, ctx: Ctx): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    ctx.problem(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
    return undefined;
  }
}

/** A secret source (`file`, `env` or `value`): its text and the key path it came from. */
async function readSecret(source: unknown, path: string, ctx: Ctx): Promise<{ text: string; path: string } | undefined> {
  if (source === null || typeof source !== 'object') return undefined;
  const { file, env, value } = source as { file?: unknown; env?: unknown; value?: unknown };
  if (typeof file === 'string') {
    const text = await readText(file, `${path}.file`, ctx);
    if (text === undefined) return undefined;
    if (text.trim() === '') {
      ctx.problem(`${path}.file`, `${file} is empty`);
      return undefined;
    }
    return { text: text.trim(), path: `${path}.file` };
  }
  if (typeof env === 'string') {
    const text = ctx.env[env];
    if (text === undefined || text.trim() === '') {
      ctx.problem(`${path}.env`, `environment variable ${env} is not set or empty`);
      return undefined;
    }
    return { text: text.trim(), path: `${path}.env` };
  }
  if (typeof value === 'string') return { text: value, path: `${path}.value` };
  return undefined;
}

function typeOf(source: unknown): string | undefined {
  const type = (source as { type?: unknown }).type;
  return typeof type === 'string' ? type : undefined;
}

function checkCertificates(text: string, path: string, kind: 'certificate' | 'trust', ctx: Ctx): void {
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    ctx.problem(path, 'no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
    return;
  }
  const certs: X509Certificate[] = [];
  blocks.forEach((block, i) => {
    try {
      certs.push(new X509Certificate(block));
    } catch {
      ctx.problem(path, `certificate ${i + 1} of ${blocks.length} is not a valid X.509 certificate`);
    }
  });
  if (certs.length !== blocks.length) return;
  if (kind === 'certificate') ctx.leaves.set(path, certs[0]!);
  certs.forEach((cert, i) => {
    const which = blocks.length === 1 ? 'the certificate' : `certificate ${i + 1} of ${blocks.length}`;
    const subject = cert.subject.replace(/\n/g, ', ');
    const notAfter = new Date(cert.validTo).getTime();
    const notBefore = new Date(cert.validFrom).getTime();
    // A presented leaf that expired is refused by every peer; an old anchor in a bundle is common.
    const fatal = kind === 'certificate' && i === 0;
    if (notAfter <= ctx.now) {
      (fatal ? ctx.problem : ctx.note)(path, `${which} ("${subject}") expired at ${new Date(notAfter).toISOString()} (${relativeTime(notAfter, ctx.now)})`);
    } else if (notAfter - ctx.now <= ctx.nearMs) {
      ctx.note(path, `${which} ("${subject}") expires at ${new Date(notAfter).toISOString()} (${relativeTime(notAfter, ctx.now)})`);
    }
    if (notBefore > ctx.now + 5 * 60_000) {
      (fatal ? ctx.problem : ctx.note)(path, `${which} ("${subject}") is not valid until ${new Date(notBefore).toISOString()}`);
    }
  });
}

function parsePrivateKey(text: string, path: string, ctx: Ctx): KeyObject | undefined {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    ctx.problem(path, 'no PEM private key found (expected -----BEGIN PRIVATE KEY----- or a PKCS#1/SEC1 key)');
    return undefined;
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    ctx.problem(path, 'the private key is encrypted; the sidecar needs it unencrypted');
    return undefined;
  }
  try {
    return createPrivateKey(text);
  } catch {
    ctx.problem(path, 'the PEM private key cannot be parsed');
    return undefined;
  }
}

function matches(leaf: X509Certificate, key: KeyObject): boolean {
  try {
    return leaf.checkPrivateKey(key);
  } catch {
    return false; // a key of another type than the certificate's
  }
}

function checkToken(text: string, path: string, type: string | undefined, ctx: Ctx): void {
  const mustBeJwt = type === undefined ? false : JWT_TYPES.has(type);
  if (!mustBeJwt && !looksLikeJwt(text)) return; // an opaque token: nothing more to check
  const decoded = decodeJwtUnverified(text);
  if (!decoded.ok) {
    ctx.problem(path, `${decoded.problem}${type ? ` (its type is ${type})` : ''}`);
    return;
  }
  const exp = numericDate(decoded.claims, 'exp');
  if (exp !== undefined) {
    const when = `${new Date(exp).toISOString()} (${relativeTime(exp, ctx.now)})`;
    if (exp <= ctx.now) ctx.problem(path, `the JWT expired at ${when}; an expired token is never sent to the STS`);
    else if (exp - ctx.now <= ctx.nearMs) ctx.note(path, `the JWT expires at ${when}; unless something rotates the file, exchanges fail after that`);
  }
  const nbf = numericDate(decoded.claims, 'nbf');
  if (nbf !== undefined && nbf > ctx.now + 60_000) ctx.note(path, `the JWT is not valid before ${new Date(nbf).toISOString()}`);
}
