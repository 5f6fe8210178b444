/**
 * Parent side of the server children: fork a compiled entry point from ./servers/,
 * start it with options over IPC, read its CPU/RSS stats, stop it. Every child ever
 * started is tracked so killAllChildren() can clean up on any exit path.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ENTRYPOINT_NODE_FLAGS } from '../../src/cli/runtime-flags.js';
import type { ChildOp, ChildReply, ChildStats, ServerInfo } from './ipc.js';

const live = new Set<ChildProcess>();

export type ServerRole = 'upstream' | 'sidecar' | 'http-proxy' | 'fuzz-sidecar' | 'h2-upstream';

export interface ServerChild {
  readonly role: ServerRole;
  readonly pid: number;
  readonly info: ServerInfo;
  /** Starts a CPU-accounting window in the child. */
  mark(): Promise<void>;
  /** CPU, wall time and RSS since the last mark. */
  stats(): Promise<ChildStats>;
  stop(): Promise<void>;
}

/**
 * Extra node flags for one role, e.g. BENCH_EXEC_ARGV_SIDECAR="--cpu-prof --cpu-prof-dir=/tmp/prof"
 * to profile the sidecar under load (the profile is written when the child stops).
 */
function execArgvFor(role: ServerRole): string[] {
  const value = process.env[`BENCH_EXEC_ARGV_${role.toUpperCase().replace(/-/g, '_')}`];
  const extra = value ? value.split(/\s+/).filter(Boolean) : [];
  // A sidecar child starts as the image's ENTRYPOINT starts the sidecar (issue 15), unless
  // BENCH_SIDECAR_FLAGS=0 asks for node's defaults (to compare).
  const entrypoint = (role === 'sidecar' || role === 'fuzz-sidecar') && process.env['BENCH_SIDECAR_FLAGS'] !== '0' ? ENTRYPOINT_NODE_FLAGS : [];
  return [...entrypoint, ...extra];
}

export async function startServerChild(role: ServerRole, options: unknown, timeoutMs = 15_000): Promise<ServerChild> {
  const script = fileURLToPath(new URL(`./servers/${role}.js`, import.meta.url));
  const child = fork(script, [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: execArgvFor(role),
    serialization: 'json',
  });
  live.add(child);

  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  let exited: string | undefined;

  const failAll = (why: string) => {
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`${role} child: ${why}`));
      pending.delete(id);
    }
  };
  child.on('message', (msg: ChildReply) => {
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve(msg.value);
    else p.reject(new Error(`${role} child failed: ${msg.error ?? 'unknown error'}`));
  });
  child.on('exit', (code, signal) => {
    live.delete(child);
    exited = `exited (code ${code}, signal ${signal})`;
    failAll(exited);
  });
  child.on('error', (err) => failAll(`process error: ${err.message}`));

  const call = <T>(op: ChildOp, opts?: unknown, ms = timeoutMs): Promise<T> => {
    if (exited) return Promise.reject(new Error(`${role} child ${exited}`));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`${role} child did not answer "${op}" within ${ms} ms`));
      }, ms);
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      child.send({ id, op, options: opts });
    });
  };

  try {
    const { info } = await call<{ info: ServerInfo }>('start', options);
    return {
      role,
      pid: child.pid!,
      info,
      mark: () => call<void>('mark'),
      stats: () => call<ChildStats>('stats'),
      async stop() {
        if (exited) return;
        const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        await call('stop', undefined, 5_000).catch(() => child.kill('SIGKILL'));
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await gone;
        clearTimeout(timer);
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/** Last-resort cleanup (error paths, signals): SIGKILL every child this process started. */
export function killAllChildren(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  live.clear();
}
