/**
 * "did you mean" for an unknown key (issue 13): the known key nearest to a typo, by
 * optimal-string-alignment distance (Levenshtein plus adjacent transpositions, so
 * "preserveHots" finds "preserveHost"), ignoring case. Only a close match is offered:
 * a wrong suggestion is worse than none.
 */

/** Edit distance with insertions, deletions, substitutions and adjacent transpositions. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The one known key close to `key`, or undefined when none is close or two are equally close. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const typed = key.toLowerCase();
  // One edit for short keys, two from six characters on, never more than a third of the key.
  const threshold = Math.min(typed.length < 6 ? 1 : 2, Math.max(1, Math.floor(typed.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  let tie = false;
  for (const candidate of known) {
    const distance = editDistance(typed, candidate.toLowerCase());
    if (distance < bestDistance) {
      [best, bestDistance, tie] = [candidate, distance, false];
    } else if (distance === bestDistance) {
      tie = true;
    }
  }
  return best !== undefined && bestDistance <= threshold && !tie ? best : undefined;
}
