/**
 * Category balancing and the rating filter (method.md §4.3 step 4): for a target T,
 * relation gets ⌊0.5·T⌋ rows and each of the other 8 categories ⌊(T − relation)/8⌋; each
 * category's allocation splits into val = max(1, ⌊0.1·alloc⌋) and train = the rest. Per
 * category the rows are split at random 90/10 into a train and a val pool, each pool is
 * sorted by rating (highest first; ties keep the random order) and the top rows are taken.
 *
 * Differences from the reference, both deterministic given the seed: a pool that falls
 * short is topped up from the other pool's leftovers (the reference leaves the gap), and
 * the returned train and val lists are shuffled rather than grouped by category.
 */
import { CATEGORIES, type Category } from './questions.js';
import { seeded, shuffled } from '../random.js';

export interface Allocation {
  total: number;
  train: number;
  val: number;
}

export interface BalanceOptions {
  /** Rows wanted in train + val together. */
  target: number;
  seed?: number;
  /** Share of relation questions (default 0.5). */
  relationShare?: number;
  /** Val share of each category (default 0.1). */
  valFraction?: number;
}

export interface BalanceResult<R> {
  train: R[];
  val: R[];
  allocation: Record<Category, Allocation>;
  /** Rows available and taken per category. */
  taken: Record<Category, { available: number; train: number; val: number }>;
}

/** Allocations per category for a target. */
export function allocations(target: number, relationShare = 0.5, valFraction = 0.1): Record<Category, Allocation> {
  if (!Number.isSafeInteger(target) || target < 0) throw new RangeError(`target must be a non-negative integer, got ${target}`);
  const relation = Math.floor(relationShare * target);
  const other = Math.floor((target - relation) / (CATEGORIES.length - 1));
  const out = {} as Record<Category, Allocation>;
  for (const c of CATEGORIES) {
    const total = c === 'relation' ? relation : other;
    const val = total === 0 ? 0 : Math.max(1, Math.floor(valFraction * total));
    out[c] = { total, train: total - val, val };
  }
  return out;
}

export function balance<R extends { category: Category; rating: number }>(rows: readonly R[], options: BalanceOptions): BalanceResult<R> {
  const seed = options.seed ?? 0;
  const valFraction = options.valFraction ?? 0.1;
  const allocation = allocations(options.target, options.relationShare ?? 0.5, valFraction);
  const byCategory = new Map<Category, R[]>(CATEGORIES.map((c) => [c, []]));
  for (const row of rows) byCategory.get(row.category)?.push(row);
  const train: R[] = [];
  const val: R[] = [];
  const taken = {} as BalanceResult<R>['taken'];
  for (const category of CATEGORIES) {
    const pool = shuffled(byCategory.get(category) ?? [], seeded(seed, 'balance', category));
    const cut = Math.floor((1 - valFraction) * pool.length);
    const byRating = (list: R[]) =>
      list
        .map((row, i) => ({ row, i }))
        .sort((a, b) => b.row.rating - a.row.rating || a.i - b.i)
        .map((e) => e.row);
    const trainPool = byRating(pool.slice(0, cut));
    const valPool = byRating(pool.slice(cut));
    const want = allocation[category];
    const t = trainPool.slice(0, want.train);
    const v = valPool.slice(0, want.val);
    const trainLeft = trainPool.slice(t.length);
    const valLeft = valPool.slice(v.length);
    // Top up a short pool from the other pool's leftovers (best rated first).
    if (t.length < want.train) t.push(...valLeft.slice(0, want.train - t.length));
    if (v.length < want.val) v.push(...trainLeft.slice(0, want.val - v.length));
    train.push(...t);
    val.push(...v);
    taken[category] = { available: pool.length, train: t.length, val: v.length };
  }
  return {
    train: shuffled(train, seeded(seed, 'order', 'train')),
    val: shuffled(val, seeded(seed, 'order', 'val')),
    allocation,
    taken,
  };
}
