/**
 * What a process holds, read from /proc (Linux): resident memory and open descriptors, with
 * TCP sockets named by their ports so a leak says what it is made of. Used by the fuzz test
 * (in-process sidecar) and by the bench's sidecar child.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// A full collection before reading the heap, so what is still held is what a leak would hold.
// RSS alone does not come back down: V8 keeps the pages it grew into (more so on Node 24).
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

export interface ProcessUsage {
  readonly rssBytes: number;
  readonly openFds: number;
  /** JS heap plus memory held outside it (Buffers), after a full garbage collection. */
  readonly liveBytes: number;
}

/** TCP sockets of the whole network namespace, by inode: "tcp :local -> :remote state XX". */
function tcpSockets(): Map<string, { local: number; remote: number; text: string }> {
  const sockets = new Map<string, { local: number; remote: number; text: string }>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const port = (a: string) => parseInt(a.split(':')[1] ?? '0', 16);
      const local = port(f[1]!);
      const remote = port(f[2]!);
      sockets.set(f[9]!, { local, remote, text: `tcp :${local} -> :${remote} state ${f[3]}` });
    }
  }
  return sockets;
}

/**
 * What this process's descriptors point at, TCP sockets named by their ports, leaving out
 * sockets to or from `excludePorts`. The fuzz excludes the STS: the sidecar's keep-alive
 * connections to it live as long as the STS keeps them (5 s for node), whatever the front does.
 */
export function selfDescriptors(excludePorts: readonly number[] = []): string[] {
  const sockets = tcpSockets();
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (readdir's own descriptor among them)
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const socket = inode === undefined ? undefined : sockets.get(inode);
    if (socket && (excludePorts.includes(socket.local) || excludePorts.includes(socket.remote))) continue;
    out.push(socket?.text ?? target);
  }
  return out.sort();
}

/** This process's RSS and open descriptors (/proc/self/fd, Linux), minus sockets of `excludePorts`. */
export function selfUsage(excludePorts: readonly number[] = []): ProcessUsage {
  collectGarbage();
  const memory = process.memoryUsage();
  return { rssBytes: memory.rss, openFds: selfDescriptors(excludePorts).length, liveBytes: memory.heapUsed + memory.external };
}

