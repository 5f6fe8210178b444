/**
 * Issue 13: which subject token each route exchanges, and one open source per distinct
 * `subjectToken` config. A route's subject token is its own `routes[].subjectToken`, else
 * its STS profile's `stsProfiles.NAME.subjectToken`, else the top-level `subjectToken`.
 * Identical configs (the same file, type and poll) share one watched source, so a rotation
 * is read once and refreshes every route that uses it.
 */
import type { Config, SubjectTokenConfig } from '../config/schema.js';
import type { Deferrer } from '../lifecycle/resources.js';
import type { Logger } from '../log/logger.js';
import type { Redactor } from '../log/redact.js';
import { openSecretSource, type SecretSource } from './secret-source.js';
import { createSubjectTokenProvider, type SubjectTokenProvider } from './subject-token.js';

/** A route's subject token as configured: the config and the key path it was written at. */
export interface RouteSubjectTokenConfig {
  readonly route: string;
  /** `routes[2].subjectToken`, `stsProfiles.google.subjectToken` or `subjectToken`. */
  readonly keyPath: string;
  readonly config: SubjectTokenConfig;
}

/** An opened subject token: its source (for the pod-token check) and the cache's view of it. */
export interface OpenedSubjectToken {
  /** The key path of the first config that named it. */
  readonly keyPath: string;
  readonly source: SecretSource;
  readonly tokens: SubjectTokenProvider;
}

export interface SubjectTokenContext {
  readonly logger: Logger;
  readonly redactor: Redactor;
  readonly resources: Deferrer;
  /** A rotated file that cannot be read keeps the previous value; told with the key path. */
  readonly onSourceError: (keyPath: string) => (err: unknown) => void;
}

/** Where each route's subject token comes from, by the precedence above. Pure: opens nothing. */
export function routeSubjectTokenConfigs(config: Config): RouteSubjectTokenConfig[] {
  return config.routes.map((route, i) => {
    if (route.subjectToken) return { route: route.name, keyPath: `routes[${i}].subjectToken`, config: route.subjectToken };
    const profile = config.stsProfiles?.[route.sts];
    if (profile?.subjectToken) return { route: route.name, keyPath: `stsProfiles.${route.sts}.subjectToken`, config: profile.subjectToken };
    return { route: route.name, keyPath: 'subjectToken', config: config.subjectToken };
  });
}

/** Opens subject tokens, one source per distinct config however many key paths name it. */
export function createSubjectTokenOpener(ctx: SubjectTokenContext): (config: SubjectTokenConfig, keyPath: string) => Promise<OpenedSubjectToken> {
  const opened = new Map<string, Promise<OpenedSubjectToken>>();
  return (config, keyPath) => {
    // The inline value is part of the key only to tell two inline tokens apart; the key is never logged.
    const key = JSON.stringify([config.file, config.env, config.value, config.type, config.pollIntervalSeconds]);
    let open = opened.get(key);
    if (!open) opened.set(key, (open = openSubjectToken(config, keyPath, ctx)));
    return open;
  };
}

async function openSubjectToken(config: SubjectTokenConfig, keyPath: string, { logger, redactor, resources, onSourceError }: SubjectTokenContext): Promise<OpenedSubjectToken> {
  const source = await openSecretSource(config, { keyPath, pollIntervalMs: config.pollIntervalSeconds * 1000, onError: onSourceError(keyPath) });
  resources.defer(() => source.close());
  redactor.track(source);
  source.onChange(() => logger.info({ source: source.description, key: keyPath }, 'subject token changed; exchanging ahead for active routes'));
  return { keyPath, source, tokens: createSubjectTokenProvider(source, config.type) };
}
