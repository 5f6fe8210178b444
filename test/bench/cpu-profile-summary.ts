/**
 * Top self-time functions of a `node --cpu-prof` profile (issue 15), grouped by function and
 * source location, with the share of all sampled time:
 *
 *   node dist/test/bench/cpu-profile-summary.js FILE.cpuprofile [top=30]
 *
 * Profile the sidecar under the bench's load with
 * `BENCH_EXEC_ARGV_SIDECAR="--cpu-prof --cpu-prof-dir=/tmp/prof"` (run.ts) or the `prof`
 * variant of memory-phases.ts; the file is written when the child exits.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fmt, table } from './report.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  readonly name: string;
  readonly where: string;
  readonly selfUs: number;
  readonly share: number;
}

export function summarizeCpuProfile(path: string, top = 30): { totalUs: number; rows: SelfTime[] } {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { name: string; where: string; us: number }>();
  let totalUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node) continue;
    totalUs += dt;
    const f = node.callFrame;
    const file = f.url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|dist)\//, '$1/');
    const where = file ? `${file}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName}@${where}`;
    const entry = self.get(key) ?? { name: f.functionName || '(anonymous)', where, us: 0 };
    entry.us += dt;
    self.set(key, entry);
  }
  const rows = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ name: e.name, where: e.where, selfUs: e.us, share: e.us / totalUs }));
  return { totalUs, rows };
}

export function cpuProfileReport(summary: ReturnType<typeof summarizeCpuProfile>): string {
  return table(
    ['function', 'self %', 'self ms', 'where'],
    summary.rows.map((r) => [r.name, fmt(r.share * 100, 1), fmt(r.selfUs / 1000, 0), r.where]),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    console.error('usage: cpu-profile-summary.js FILE.cpuprofile [top]');
    process.exit(2);
  }
  const summary = summarizeCpuProfile(file, Number(top ?? 30));
  console.log(`${fmt(summary.totalUs / 1000, 0)} ms sampled`);
  console.log(cpuProfileReport(summary));
}
