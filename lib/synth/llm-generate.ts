/**
 * LLM question generation (method.md §4.3 steps 1-3, 5): for each image, a model reads the
 * scene graph (and, optionally, the image) and proposes one spatial multiple-choice question;
 * accepted questions are grounded in the graph, their options shuffled, and they become the
 * same candidates template synthesis makes, balanced the same way (balance.ts).
 *
 * The reference sends a running "data statistics" block with each request. Here the block is
 * refreshed once per wave of `wave` scene graphs (from the questions accepted in earlier
 * waves, in input order) and the requests of a wave run concurrently. Prompts therefore do not
 * depend on timing or on the concurrency, so a rerun rebuilds exactly the same requests and
 * the on-disk cache answers every one already paid for.
 */
import { LEVELS } from '../data/schema.js';
import { balance } from './balance.js';
import { sha256Hex } from './llm-cache.js';
import { describeEndpoint, imageContent, LlmSession, type ChatRequest, type LlmCallCounts, type LlmRunOptions } from './llm.js';
import { generationPrompt, type GenerationBalance } from './llm-generate-prompt.js';
import { parseGeneratedQuestion } from './llm-generate-parse.js';
import { CATEGORIES, type Category, type Level, type Question } from './questions.js';
import { seeded, shuffled } from '../random.js';
import { normaliseGraph, type NormalisedGraph, type SceneGraph } from './scene-graph.js';
import { questionSubgraph, sceneJson } from './subgraph.js';
import { emptySynthStats, LEVEL_SHARES, poolCaps, type Candidate, type SynthDataset, type SynthStats } from './synthesize.js';

export interface LlmGenerateOptions extends LlmRunOptions {
  /** Seed of the option shuffle and of balancing (default 0). */
  seed?: number;
  /** Rows wanted after balancing (default 10,000); with `oversample` it says when to stop reading. */
  target?: number;
  /** Accepted questions wanted per category, as a multiple of its allocation (default 2). */
  oversample?: number;
  /** Share of relation questions asked for and balanced to (default 0.5). */
  relationShare?: number;
  /** Read at most this many scene graphs. */
  maxImages?: number;
  /** The `images.path` of a graph's rows, or undefined to skip it (`image-missing`). */
  imagePath?: (graph: NormalisedGraph) => string | undefined | Promise<string | undefined>;
  /**
   * When given, the image is attached to each request (the reference sends the graph only).
   * Called with the graph and the path `imagePath` gave.
   */
  loadImage?: (graph: NormalisedGraph, imagePath: string) => Promise<Uint8Array>;
  /** Scene graphs per wave: the statistics block is refreshed between waves (default 64). */
  wave?: number;
  temperature?: number;
  /** Reply length limit (default 256, as the reference). */
  maxTokens?: number;
  /** Called after every wave. */
  onProgress?: (stats: SynthStats, llm: LlmGenerationStats) => void;
}

/** What generation asked and got, besides the per-category counts of SynthStats. */
export interface LlmGenerationStats extends LlmCallCounts {
  /** The endpoint, without the key. */
  endpoint: string;
  /** Replies read (one per scene graph asked). */
  replies: number;
  /** Replies that became questions. */
  accepted: number;
  /** Accepted count questions whose answer was moved to the graph's count. */
  corrected: number;
  /** Rejections of replies that did not get as far as a valid category, by reason. */
  uncategorised: Record<string, number>;
}

export function emptyLlmGenerationStats(endpoint = ''): LlmGenerationStats {
  return { endpoint, requests: 0, cached: 0, retries: 0, replies: 0, accepted: 0, corrected: 0, uncategorised: {} };
}

const DEFAULTS = { seed: 0, target: 10_000, oversample: 2, relationShare: 0.5, wave: 64, temperature: 0, maxTokens: 256 };

/** The question with its options in a seeded order (the model tends to put the answer first). */
export function shuffleOptions(question: Question, seed: number): Question {
  const order = shuffled(
    question.options.map((_, i) => i),
    seeded(seed, 'llm-options', question.imageId, question.question),
  );
  return { ...question, options: order.map((i) => question.options[i]!), answerIndex: order.indexOf(question.answerIndex) };
}

interface Asked {
  graph: NormalisedGraph;
  path: string;
  reply?: string;
}

/**
 * Candidates proposed by the LLM, wave by wave, until every category has its share of the
 * pools (`oversample` x allocation), `maxImages` graphs were read, or the input ends. `stats`
 * (generated = replies naming the category, picked = accepted, refused = rejections) and
 * `llm` are updated as it goes. Non-retryable HTTP errors and aborts reject with an LlmError.
 */
export async function* generateCandidatesWithLlm(
  graphs: AsyncIterable<SceneGraph> | Iterable<SceneGraph>,
  options: LlmGenerateOptions,
  stats: SynthStats = emptySynthStats(),
  llm: LlmGenerationStats = emptyLlmGenerationStats(),
): AsyncGenerator<Candidate> {
  const seed = options.seed ?? DEFAULTS.seed;
  const wave = options.wave ?? DEFAULTS.wave;
  if (!Number.isSafeInteger(wave) || wave < 1) throw new RangeError(`wave must be a positive integer, got ${options.wave}`);
  const relationShare = options.relationShare ?? DEFAULTS.relationShare;
  const caps = poolCaps(options.target ?? DEFAULTS.target, options.oversample ?? DEFAULTS.oversample, relationShare);
  const targetShares = Object.fromEntries(
    CATEGORIES.map((c) => [c, c === 'relation' ? relationShare : (1 - relationShare) / (CATEGORIES.length - 1)]),
  ) as Record<Category, number>;
  const levels = Object.fromEntries(LEVELS.map((l) => [l, 0])) as Record<Level, number>;
  const recentCategories: Category[] = [];
  const recentLevels: Level[] = [];
  const full = () => CATEGORIES.every((c) => stats.picked[c] >= caps[c]);

  const session = new LlmSession(options);
  llm.endpoint = describeEndpoint(options.endpoint);
  const syncCounts = () => Object.assign(llm, session.counts);
  const iterator = (Symbol.asyncIterator in graphs ? graphs[Symbol.asyncIterator]() : (graphs as Iterable<SceneGraph>)[Symbol.iterator]()) as
    | AsyncIterator<SceneGraph>
    | Iterator<SceneGraph>;
  let inputDone = false;
  try {
    while (!inputDone && !full()) {
      // read the next wave of usable graphs
      const batch: Asked[] = [];
      while (batch.length < wave) {
        if (options.maxImages !== undefined && stats.images >= options.maxImages) {
          inputDone = true;
          break;
        }
        const next = await iterator.next();
        if (next.done) {
          inputDone = true;
          break;
        }
        stats.images++;
        let graph: NormalisedGraph;
        try {
          graph = normaliseGraph(next.value, stats.normalise);
        } catch (error) {
          if (!(error instanceof RangeError)) throw error;
          skip(stats, 'bad-image-size');
          continue;
        }
        if (graph.objects.length === 0) {
          skip(stats, 'no-objects');
          continue;
        }
        const path = options.imagePath ? await options.imagePath(graph) : (graph.file ?? `${graph.imageId}.jpg`);
        if (path === undefined) {
          skip(stats, 'image-missing');
          continue;
        }
        batch.push({ graph, path });
      }
      if (batch.length === 0) break;

      const snapshot: GenerationBalance = {
        categories: { ...stats.picked },
        levels: { ...levels },
        recentCategories: recentCategories.slice(-3),
        recentLevels: recentLevels.slice(-3),
        targetShares,
        levelShares: LEVEL_SHARES,
      };
      await session.forEach(batch, async (asked) => {
        asked.reply = await askForQuestion(session, asked, snapshot, options);
      });
      syncCounts();

      for (const asked of batch) {
        llm.replies++;
        const verdict = parseGeneratedQuestion(asked.reply ?? '', asked.graph);
        const category = verdict.ok ? verdict.question.category : verdict.category;
        if (category !== undefined) stats.generated[category]++;
        if (!verdict.ok) {
          const bucket = verdict.category === undefined ? llm.uncategorised : stats.refused[verdict.category];
          bucket[verdict.reason] = (bucket[verdict.reason] ?? 0) + 1;
          continue;
        }
        const question = shuffleOptions(verdict.question, seed);
        llm.accepted++;
        if (verdict.corrected) llm.corrected++;
        stats.picked[question.category]++;
        stats.pickedLevels[question.category][question.level]++;
        stats.imagesUsed++;
        levels[question.level]++;
        recentCategories.push(question.category);
        recentLevels.push(question.level);
        if (recentCategories.length > 3) recentCategories.shift();
        if (recentLevels.length > 3) recentLevels.shift();
        yield {
          question,
          category: question.category,
          rating: question.rating,
          context: {
            imageId: asked.graph.imageId,
            width: asked.graph.width,
            height: asked.graph.height,
            scene: sceneJson(questionSubgraph(asked.graph, question.question)),
            imagePath: asked.path,
          },
        };
      }
      options.onProgress?.(stats, llm);
    }
  } finally {
    syncCounts();
    session.close();
    if (!inputDone) await iterator.return?.();
  }
}

/** One graph's reply: from the cache, or asked (with the image when `loadImage` is given). */
async function askForQuestion(
  session: LlmSession,
  asked: Asked,
  balance: GenerationBalance,
  options: LlmGenerateOptions,
): Promise<string> {
  const prompt = generationPrompt(asked.graph, balance);
  const image = options.loadImage ? await options.loadImage(asked.graph, asked.path) : undefined;
  const requestHash = sha256Hex(image ? `${prompt}\n#image:${sha256Hex(image)}` : prompt);
  const request = (): ChatRequest => ({
    content: image ? [{ type: 'text', text: prompt }, imageContent(image)] : [{ type: 'text', text: prompt }],
    temperature: options.temperature ?? DEFAULTS.temperature,
    maxTokens: options.maxTokens ?? DEFAULTS.maxTokens,
  });
  return session.cachedReply(['q-generate-v1', session.model, asked.graph.imageId, requestHash], request);
}

function skip(stats: SynthStats, reason: string): void {
  stats.imagesSkipped[reason] = (stats.imagesSkipped[reason] ?? 0) + 1;
}

/** LLM candidates until the pools are full or the input ends, balanced into train and val (not yet rendered). */
export async function synthesizeLlmCandidateDataset(
  graphs: AsyncIterable<SceneGraph> | Iterable<SceneGraph>,
  options: LlmGenerateOptions,
): Promise<SynthDataset<Candidate> & { llm: LlmGenerationStats }> {
  const stats = emptySynthStats();
  const llm = emptyLlmGenerationStats();
  const candidates: Candidate[] = [];
  for await (const candidate of generateCandidatesWithLlm(graphs, options, stats, llm)) candidates.push(candidate);
  const result = balance(candidates, {
    target: options.target ?? DEFAULTS.target,
    seed: options.seed ?? DEFAULTS.seed,
    relationShare: options.relationShare ?? DEFAULTS.relationShare,
  });
  return { train: result.train, val: result.val, stats, allocation: result.allocation, taken: result.taken, llm };
}
