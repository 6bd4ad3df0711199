// The application's data in the simulator: every write is a version with its parent, so the data of a
// node is a path from the root, and a split brain makes two branches.
import type { Version } from './world.ts';

/** Writes of `other`'s data that `mine` lacks and that were not made while the two were cut off. */
export function missingWrites(mine: Version, theirs: Version, otherName: string): Version[] {
  let x = theirs;
  let y = mine;
  while (x.depth > y.depth) x = x.parent!;
  while (y.depth > x.depth) y = y.parent!;
  while (x !== y) {
    x = x.parent!;
    y = y.parent!;
  }
  const missing: Version[] = [];
  for (let v = theirs; v !== x; v = v.parent!) {
    if (v.writer === otherName && !v.exemptForOther) missing.push(v);
  }
  return missing;
}
