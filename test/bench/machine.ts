/**
 * Whole-machine CPU accounting from /proc/stat (Linux; undefined elsewhere), so each case
 * can show how busy the machine was during its window and how much of that was not the
 * bench's own processes (other jobs on a shared box make a window untrustworthy).
 */
import { readFileSync } from 'node:fs';

/** USER_HZ: /proc/stat counts in 1/100 s on every mainstream Linux. */
const TICKS_PER_SECOND = 100;

export interface CpuSnapshot {
  readonly busy: number;
  readonly softirq: number;
  readonly steal: number;
  readonly at: bigint;
}

export function cpuSnapshot(): CpuSnapshot | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    if (f.length < 8 || f.some((n) => !Number.isFinite(n))) return undefined;
    const [user, nice, system, , , irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
    return { busy: user + nice + system + irq + softirq + steal, softirq, steal, at: process.hrtime.bigint() };
  } catch {
    return undefined;
  }
}

export interface MachineUsage {
  /** Cores' worth of CPU in use on the whole machine during the interval (all processes, irq, steal). */
  readonly busyCores: number;
  readonly softirqCores: number;
  readonly stealCores: number;
}

export function machineUsage(from: CpuSnapshot | undefined, to: CpuSnapshot | undefined): MachineUsage | undefined {
  if (!from || !to) return undefined;
  const seconds = Number(to.at - from.at) / 1e9;
  if (seconds <= 0) return undefined;
  const cores = (ticks: number) => ticks / TICKS_PER_SECOND / seconds;
  return { busyCores: cores(to.busy - from.busy), softirqCores: cores(to.softirq - from.softirq), stealCores: cores(to.steal - from.steal) };
}

/** The CPUs this process may run on (children inherit it), e.g. "0-1"; shows whether the run was pinned with taskset. */
export function cpuAffinity(): string | undefined {
  try {
    return /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
