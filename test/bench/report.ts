/** Plain-text tables for the bench output. */

export type Cell = string | number | undefined;

export function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Columns right-aligned except the first; `undefined` prints as "-". */
export function table(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = [header, ...rows].map((r) => r.map((c) => (c === undefined ? '-' : String(c))));
  const widths = header.map((_, i) => Math.max(...text.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(text[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...text.slice(1).map(line)];
  return out.join('\n');
}

export function mb(bytes: number | undefined): string {
  return bytes === undefined ? '-' : `${fmt(bytes / (1024 * 1024), 1)} MB`;
}
