/**
 * Configuration reload (issue 13): on SIGHUP or a change of the config file, the new file is
 * read and validated in full; if anything is wrong the serving configuration stays and every
 * problem is logged with its key path. Otherwise the next generation is built beside the
 * serving one and takes over at once; requests in flight finish on the generation they
 * started on. Reloads run one at a time, in the order asked.
 */
import type { ReloadObserver } from './admin/reload-metrics.js';
import { ConfigValidationError, loadConfigFile, type ConfigProblem } from './config/load.js';
import type { Config } from './config/schema.js';
import { ConfigError, SidecarError } from './errors.js';
import type { Logger } from './log/logger.js';

export interface ReloadResult {
  readonly ok: boolean;
  /** The generation serving after the attempt. */
  readonly generation: number;
  /** Why the attempt failed, each naming its key path (empty on success). */
  readonly problems: readonly ConfigProblem[];
  /** Routes whose cached tokens the new generation took over (no exchange for them). */
  readonly carriedRoutes: readonly string[];
}

export interface ReloadTarget {
  /** The generation serving now. */
  readonly generation: number;
  readonly config: Config;
  /** Builds and commits the next generation; throws (nothing changed) when it cannot be built. */
  apply(config: Config): Promise<{ carriedRoutes: string[] }>;
}

export interface Reloader {
  /** Reloads from `config`, or else from the config file. */
  reload(config?: Config): Promise<ReloadResult>;
}

export interface ReloaderOptions {
  readonly target: ReloadTarget;
  readonly file: string | undefined;
  readonly logger: Logger;
  readonly observer: ReloadObserver;
  /** Checks what the config names (files readable, PEMs parse); none by default. */
  readonly checkFiles?: (config: Config) => Promise<ConfigProblem[]>;
}

export function createReloader({ target, file, logger, observer, checkFiles }: ReloaderOptions): Reloader {
  let queue: Promise<unknown> = Promise.resolve();

  async function attempt(given: Config | undefined): Promise<ReloadResult> {
    const before = target.config;
    let config: Config;
    try {
      if (given) config = given;
      else if (file) config = await loadConfigFile(file);
      else throw new ConfigError('', 'no config file to reload from (the sidecar was started from a config object)', { code: 'ERR_CONFIG_UNREADABLE' });
      const problems = checkFiles ? await checkFiles(config) : [];
      if (problems.length > 0) throw new ConfigValidationError(problems);
      const { carriedRoutes } = await target.apply(config);
      observer.succeeded(target.generation, Date.now());
      logger.info({ generation: target.generation, file: file ?? null, ...routeChanges(before, config), carriedRoutes }, 'configuration reloaded');
      if (JSON.stringify(before.limits) !== JSON.stringify(config.limits)) {
        logger.warn({ key: 'limits' }, 'limits changed: they apply to listeners opened from now on; listeners kept open keep theirs until a restart');
      }
      return { ok: true, generation: target.generation, problems: [], carriedRoutes };
    } catch (err) {
      observer.failed();
      const problems = problemsOf(err);
      for (const p of problems) logger.warn({ key: p.path || null, problem: p.problem, file: file ?? null }, 'configuration reload refused; the previous configuration keeps serving');
      if (!(err instanceof SidecarError)) logger.error({ err }, 'configuration reload failed unexpectedly; the previous configuration keeps serving');
      return { ok: false, generation: target.generation, problems, carriedRoutes: [] };
    }
  }

  /** A reload from the file that has not started yet: later asks join it (it reads the file when it starts). */
  let pendingFromFile: Promise<ReloadResult> | undefined;
  return {
    reload(config) {
      // Bounded: a file rewritten many times while a reload runs queues one more read, not one per write.
      if (!config && pendingFromFile) return pendingFromFile;
      const next = queue.then(() => {
        if (!config) pendingFromFile = undefined;
        return attempt(config);
      });
      if (!config) pendingFromFile = next;
      queue = next.catch(() => undefined);
      return next;
    },
  };
}

function problemsOf(err: unknown): ConfigProblem[] {
  if (err instanceof ConfigValidationError) return [...err.problems];
  if (err instanceof ConfigError) return [{ path: err.path, problem: err.path && err.message.startsWith(`${err.path}: `) ? err.message.slice(err.path.length + 2) : err.message }];
  if (err instanceof SidecarError) return [{ path: '', problem: `${err.code}: ${err.message}` }];
  return [{ path: '', problem: err instanceof Error ? err.message : String(err) }];
}

/** Route names added, removed and changed, for the reload's log line. */
function routeChanges(before: Config, after: Config): { added: string[]; removed: string[]; changed: string[] } {
  const old = new Map(before.routes.map((r) => [r.name, JSON.stringify(r)]));
  const now = new Map(after.routes.map((r) => [r.name, JSON.stringify(r)]));
  return {
    added: [...now.keys()].filter((n) => !old.has(n)),
    removed: [...old.keys()].filter((n) => !now.has(n)),
    changed: [...now].filter(([n, r]) => old.has(n) && old.get(n) !== r).map(([n]) => n),
  };
}
