/**
 * Runtime for a server child: answers the parent's IPC requests (see ../ipc.ts).
 * Each entry point in this folder calls serveChild() with a function that starts its
 * server from the options the parent sends and returns its info and a close().
 */
import { readdirSync } from 'node:fs';
import type { ChildReply, ChildRequest, ChildStats, ServerInfo } from '../ipc.js';

export interface RunningServer {
  readonly info: ServerInfo;
  /** Open descriptors worth reporting (default: every entry of /proc/self/fd). */
  readonly openFds?: () => number;
  close(): Promise<void>;
}

export function serveChild<O>(start: (options: O) => Promise<RunningServer>): void {
  const send = process.send?.bind(process);
  if (!send) {
    console.error('this script is a bench server child: run it through test/bench/run.js (it needs an IPC channel)');
    process.exit(2);
  }
  let server: RunningServer | undefined;
  let cpuMark = process.cpuUsage();
  let timeMark = process.hrtime.bigint();

  const reply = (msg: ChildReply, then?: () => void) => send(msg, undefined, undefined, then ? () => then() : undefined);

  async function handle(req: ChildRequest): Promise<unknown> {
    switch (req.op) {
      case 'start':
        if (server) throw new Error('already started');
        server = await start(req.options as O);
        return { info: server.info };
      case 'mark':
        cpuMark = process.cpuUsage();
        timeMark = process.hrtime.bigint();
        return {};
      case 'stats': {
        const cpu = process.cpuUsage(cpuMark);
        const mem = process.memoryUsage();
        const stats: ChildStats = {
          userUs: cpu.user,
          systemUs: cpu.system,
          elapsedUs: Number(process.hrtime.bigint() - timeMark) / 1000,
          rssBytes: mem.rss,
          heapUsedBytes: mem.heapUsed,
          openFds: server?.openFds?.() ?? readdirSync('/proc/self/fd').length,
        };
        return stats;
      }
      case 'stop': {
        const s = server;
        server = undefined;
        await s?.close();
        return {};
      }
      default:
        throw new Error(`unknown op ${String((req as { op: unknown }).op)}`);
    }
  }

  process.on('message', (msg: ChildRequest) => {
    handle(msg).then(
      (value) => {
        // After 'stop', exit once the reply is flushed (the parent also kills a child that lingers).
        reply({ id: msg.id, ok: true, value }, msg.op === 'stop' ? () => process.exit(0) : undefined);
      },
      (err: unknown) => reply({ id: msg.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
  // The parent went away (crash, Ctrl-C): do not outlive it.
  process.on('disconnect', () => process.exit(0));
}
