// "Did you mean …?" hints for misspelt element names, attribute names and keywords.

/** Levenshtein edit distance (insertions, deletions, substitutions), case-sensitive. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The closest candidate to `word`, if it is close enough to be a plausible typo: at most 2 edits, and
 * fewer edits than the shorter word has characters (any one-letter word is one edit from any other, so
 * "x" suggests nothing). A case-only
 * difference always qualifies. Ties go to the first candidate, so callers list the likelier ones first.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const distance = candidate.toLowerCase() === word.toLowerCase() ? 0.5 : editDistance(word, candidate);
    const limit = Math.min(2, Math.min(word.length, candidate.length) - 1);
    if (distance <= Math.max(limit, 0.5) && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}
