/**
 * Summary of a V8 heap snapshot (issue 15): self size and count by constructor (objects),
 * or by node type for the rest (strings, compiled code, closures, arrays...). Self size, not
 * retained: retained sizes need the dominator tree, and self size by kind already shows where
 * the bytes are.
 */
import { readFileSync } from 'node:fs';

export interface HeapGroup {
  readonly name: string;
  readonly count: number;
  readonly selfBytes: number;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Node types whose name is a constructor worth telling apart; everything else is grouped by type. */
const BY_NAME = new Set(['object', 'closure', 'native']);

export function summarizeHeapSnapshot(path: string, top = 15): { totalBytes: number; groups: HeapGroup[] } {
  const snap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const groups = new Map<string, { count: number; selfBytes: number }>();
  let totalBytes = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!] ?? 'unknown';
    const size = snap.nodes[i + sizeAt]!;
    totalBytes += size;
    const key = BY_NAME.has(type) ? `${type === 'object' ? '' : `(${type}) `}${snap.strings[snap.nodes[i + nameAt]!]}` : `(${type})`;
    const g = groups.get(key) ?? { count: 0, selfBytes: 0 };
    g.count += 1;
    g.selfBytes += size;
    groups.set(key, g);
  }
  const sorted = [...groups].map(([name, g]) => ({ name, ...g })).sort((a, b) => b.selfBytes - a.selfBytes);
  return { totalBytes, groups: sorted.slice(0, top) };
}
