/**
 * Child of ../memory-phases.ts (issue 15): the sidecar brought up one phase at a time in a
 * fresh process, so `process.memoryUsage()` can be read between phases. Nothing of the
 * sidecar is imported before the 'modules' phase (the imports below are node's own).
 *
 * Ops (IPC, { id, op, arg }): sample (gc first when --expose-gc), modules (import what
 * `sts-sidecar run` imports), config (load the YAML file `arg`), start (startSidecar, waiting
 * for the first exchange), snapshot (v8.writeHeapSnapshot to `arg`), modules-list, stop.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { writeHeapSnapshot } from 'node:v8';
import { applyRuntimeFlags } from '../../../src/cli/runtime-flags.js';

// The flags `sts-sidecar run` sets at run time (issue 15), for the variant that starts as shipped.
if (process.env['PHASES_RUNTIME_FLAGS'] === '1') applyRuntimeFlags();

type Op = 'sample' | 'sample-nogc' | 'modules' | 'config' | 'start' | 'snapshot' | 'modules-list' | 'stop';

interface Running {
  readonly routeUrls: Readonly<Record<string, string>>;
  readonly adminUrl: string;
  close(drainMs?: number): Promise<void>;
}

let runModules: { loadConfigFile: (path: string) => Promise<unknown>; startSidecar: (config: never, options: { waitForTokens: boolean }) => Promise<Running> } | undefined;
let config: unknown;
let sidecar: Running | undefined;
const gc = (globalThis as { gc?: () => void }).gc;

export function memorySample(): NodeJS.MemoryUsage & { peakRssBytes: number } {
  gc?.();
  return { ...process.memoryUsage(), peakRssBytes: peakRss() };
}

/** VmHWM: the peak resident set of this process so far (Linux). */
function peakRss(): number {
  try {
    const kb = /^VmHWM:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

const require = createRequire(import.meta.url);

async function handle(op: Op, arg: string | undefined): Promise<unknown> {
  switch (op) {
    case 'sample':
      return memorySample();
    case 'sample-nogc':
      // During load: no forced gc (it would disturb what is measured).
      return { ...process.memoryUsage(), peakRssBytes: peakRss(), cpu: process.cpuUsage() };
    case 'modules': {
      // What src/cli/run.ts imports: the config loader and the composition root.
      const [load, main] = await Promise.all([import('../../../src/config/load.js'), import('../../../src/main.js')]);
      runModules = { loadConfigFile: load.loadConfigFile, startSidecar: main.startSidecar as never };
      return memorySample();
    }
    case 'config':
      config = await runModules!.loadConfigFile(arg!);
      return memorySample();
    case 'start':
      sidecar = await runModules!.startSidecar(config as never, { waitForTokens: true });
      return { routeUrls: sidecar.routeUrls, adminUrl: sidecar.adminUrl };
    case 'snapshot':
      gc?.();
      return writeHeapSnapshot(arg);
    case 'modules-list':
      // CommonJS modules in require.cache (undici, pino, prom-client...), by package.
      return Object.keys(require.cache);
    case 'stop':
      await sidecar?.close(0);
      return {};
  }
}

process.on('message', (msg: { id: number; op: Op; arg?: string }) => {
  handle(msg.op, msg.arg).then(
    (value) => process.send!({ id: msg.id, ok: true, value }, undefined, undefined, () => (msg.op === 'stop' ? process.exit(0) : undefined)),
    (err: unknown) => process.send!({ id: msg.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ id: 0, ok: true, value: 'ready' });
