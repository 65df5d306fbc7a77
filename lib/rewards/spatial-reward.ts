/**
 * The SpatialThinker dense spatial reward (shared/spec/rewards.md):
 * format gates everything, accuracy gates spatial, and
 * overall = w.format F + w.count C + w.accuracy A + w.spatial S.
 * `gated: false` is the paper's ablation (Table 5, `spatial_ungated`): the
 * same four terms summed with no gate, each scored on whatever the
 * completion holds, so a policy can collect count and spatial reward with a
 * malformed completion or a wrong answer.
 * A batch is scored with one native call for all of its box matching.
 */
import { native, type Device } from '../native/binding.js';
import { groundTruthOutsideImage, parseGroundTruth, type GroundTruth, GroundTruthError } from './ground-truth.js';
import { labelSimilarity, type LabelSimilarity, type SimilarityName } from './similarity/index.js';
import { extractScene, isValidObject, listOr } from './scene.js';
import { answersMatch, checkFormat, countScore, extractAnswer, predictedObjects, type PredictedObject } from './spatial-format.js';
import { RewardInputError, type BatchReward, type ImageGeometry, type RewardInput, type RewardScores } from './types.js';

export interface SpatialRewardWeights {
  format: number;
  count: number;
  accuracy: number;
  spatial: number;
}

export const DEFAULT_SPATIAL_WEIGHTS: Readonly<SpatialRewardWeights> = Object.freeze({
  format: 0.1,
  count: 0.2,
  accuracy: 0.5,
  spatial: 0.2,
});

/** The box matching's cost, semanticWeight (1 - similarity) + iouWeight (1 - mCIoU), as in shared/spec/rewards.md. */
const MATCH_COST_WEIGHTS = { semanticWeight: 2, iouWeight: 1 } as const;

export interface SpatialRewardOptions {
  weights?: Partial<SpatialRewardWeights>;
  /** 'wordnet' (default), 'exact' (the reference's numbers exactly), or your own function. */
  similarity?: SimilarityName | LabelSimilarity;
  /** Where the box matching runs: 'cpu' (default) or 'cuda'. */
  device?: Device;
  /** The lexicographic gates (default true); false is the ungated ablation. */
  gated?: boolean;
}

export interface SpatialScores extends RewardScores {
  format: number;
  count: number;
  accuracy: number;
  spatial: number;
}

/** A completion whose spatial component still needs box matching. */
const GROUND_TRUTH_CACHE_SIZE = 4096;

interface SpatialProblem {
  index: number;
  predictions: PredictedObject[];
  groundTruth: GroundTruth;
  width: number;
  height: number;
}

export class SpatialReward implements BatchReward {
  readonly name: 'spatial' | 'spatial_ungated';
  readonly weights: Readonly<SpatialRewardWeights>;
  readonly gated: boolean;
  private readonly similarity: LabelSimilarity;
  private readonly device: Device;

  constructor(options: SpatialRewardOptions = {}) {
    this.weights = Object.freeze(validateWeights({ ...DEFAULT_SPATIAL_WEIGHTS, ...options.weights }));
    this.similarity = labelSimilarity(options.similarity ?? 'wordnet');
    this.device = options.device ?? 'cpu';
    this.gated = options.gated ?? true;
    this.name = this.gated ? 'spatial' : 'spatial_ungated';
  }

  /** Why this input cannot be scored (a malformed ground truth or image size), or undefined. */
  validate(input: RewardInput): string | undefined {
    if (!input.image) return 'no image size: the prompt has no `Image size: (W x H)` line and none was given';
    const { width, height } = input.image;
    if (!(width > 0 && height > 0 && Number.isFinite(width) && Number.isFinite(height)))
      return `image size ${width} x ${height} is not positive and finite`;
    try {
      return groundTruthOutsideImage(this.groundTruth(input.groundTruth), width, height);
    } catch (error) {
      if (error instanceof GroundTruthError) return error.message;
      throw error;
    }
  }

  async scoreBatch(inputs: readonly RewardInput[]): Promise<SpatialScores[]> {
    const problems: SpatialProblem[] = [];
    const scores = inputs.map((input, index): SpatialScores => {
      const invalid = this.validate(input);
      if (invalid !== undefined) throw new RewardInputError(index, invalid);
      const { width, height } = input.image as ImageGeometry;
      const groundTruth = this.groundTruth(input.groundTruth);
      if (!this.gated) return this.ungatedScores(input.completion, groundTruth, index, width, height, problems);
      const completion = checkFormat(input.completion);
      if (!completion) return { overall: 0, format: 0, count: 0, accuracy: 0, spatial: 0 };
      const count = countScore(completion.scene, groundTruth.scene);
      const accuracy = answersMatch(extractAnswer(input.completion), groundTruth.answer) ? 1 : 0;
      let spatial = 0;
      if (accuracy === 1) {
        // Reference quirk (rewards.md §3.2): a ground truth with relations but
        // no objects scores spatial 1 whatever was predicted.
        if (groundTruth.objects.length === 0 && groundTruth.relationshipCount > 0) spatial = 1;
        else problems.push({ index, predictions: predictedObjects(completion), groundTruth, width, height });
      }
      return { overall: 0, format: 1, count, accuracy, spatial };
    });
    if (problems.length > 0) {
      const spatial = await this.matchBoxes(problems);
      problems.forEach((problem, k) => {
        const value = spatial[k] as number;
        // Degenerate boxes (zero width or height) can map to a CIoU a little
        // below 0 (-0.05 seen in the fault suite's fuzzing). Behind the accuracy
        // gate the reference's number is kept; ungated, any garbage completion
        // reaches the matching, and the reward must stay in [0, 1].
        (scores[problem.index] as SpatialScores).spatial = this.gated ? value : Math.min(1, Math.max(0, value));
      });
    }
    const w = this.weights;
    for (const s of scores)
      s.overall = w.format * s.format + w.count * s.count + w.accuracy * s.accuracy + w.spatial * s.spatial;
    return scores;
  }

  /**
   * The four terms without gates: format as usual; count, accuracy and
   * spatial from whatever scene and answer blocks the completion has, valid
   * or not (objects that are not `{id, bbox}` with an ordered finite box are
   * left out of the matching, as in the gated reward).
   */
  private ungatedScores(text: string, groundTruth: GroundTruth, index: number, width: number, height: number, problems: SpatialProblem[]): SpatialScores {
    const format = checkFormat(text) ? 1 : 0;
    const scene = extractScene(text);
    const count = Object.keys(scene).length === 0 ? 0 : countScore(scene, groundTruth.scene);
    const accuracy = answersMatch(extractAnswer(text), groundTruth.answer) ? 1 : 0;
    let spatial = 0;
    if (groundTruth.objects.length === 0 && groundTruth.relationshipCount > 0) spatial = 1;
    else {
      const objects = (listOr(scene, 'objects') ?? []).filter(isValidObject) as { id: string; bbox: unknown[] }[];
      if (objects.length > 0) problems.push({ index, predictions: predictedObjects({ scene, objects }), groundTruth, width, height });
    }
    return { overall: 0, format, count, accuracy, spatial };
  }

  /**
   * The localisation score (mapped CIoU after Hungarian matching) of every
   * well-formed completion, without the accuracy gate; 0 for a malformed one.
   * Evaluation reports it as "box CIoU" whether or not the answer was right.
   */
  async localisationScores(inputs: readonly RewardInput[]): Promise<number[]> {
    const out = new Array<number>(inputs.length).fill(0);
    const problems: SpatialProblem[] = [];
    inputs.forEach((input, index) => {
      const invalid = this.validate(input);
      if (invalid !== undefined) throw new RewardInputError(index, invalid);
      const completion = checkFormat(input.completion);
      if (!completion) return;
      const { width, height } = input.image as ImageGeometry;
      const groundTruth = this.groundTruth(input.groundTruth);
      if (groundTruth.objects.length === 0) return;
      problems.push({ index, predictions: predictedObjects(completion), groundTruth, width, height });
    });
    if (problems.length > 0) {
      const scores = await this.matchBoxes(problems);
      problems.forEach((p, k) => (out[p.index] = scores[k] as number));
    }
    return out;
  }

  // The G completions of a prompt share its ground truth: parse it once.
  private readonly groundTruths = new Map<string, GroundTruth>();

  private groundTruth(text: string): GroundTruth {
    let parsed = this.groundTruths.get(text);
    if (!parsed) {
      parsed = parseGroundTruth(text);
      if (this.groundTruths.size >= GROUND_TRUTH_CACHE_SIZE) this.groundTruths.clear();
      this.groundTruths.set(text, parsed);
    }
    return parsed;
  }

  /** Spatial scores of the problems, in order, from one native call. */
  private async matchBoxes(problems: readonly SpatialProblem[]): Promise<Float64Array> {
    let nPred = 0;
    let nGt = 0;
    let nPairs = 0;
    for (const p of problems) {
      nPred += p.predictions.length;
      nGt += p.groundTruth.objects.length;
      nPairs += p.predictions.length * p.groundTruth.objects.length;
    }
    const predBoxes = new Float64Array(4 * nPred);
    const gtBoxes = new Float64Array(4 * nGt);
    const predCounts = new Int32Array(problems.length);
    const gtCounts = new Int32Array(problems.length);
    const similarity = new Float64Array(nPairs);
    let pb = 0;
    let gb = 0;
    let s = 0;
    problems.forEach((p, i) => {
      const preds = p.predictions;
      const gts = p.groundTruth.objects;
      predCounts[i] = preds.length;
      gtCounts[i] = gts.length;
      for (const o of preds) pb = writeNormalisedBox(predBoxes, pb, o.box, p.width, p.height);
      for (const o of gts) gb = writeNormalisedBox(gtBoxes, gb, o.box, p.width, p.height);
      for (const pred of preds) for (const gt of gts) similarity[s++] = clampSimilarity(this.similarity(pred.label, gt.label));
    });
    const { scores } = await native().spatialScores({
      predBoxes,
      predCounts,
      gtBoxes,
      gtCounts,
      similarity,
      ...MATCH_COST_WEIGHTS,
      device: this.device,
    });
    return scores;
  }
}

// Multiplying by the reciprocal, as the reference does, keeps results bit-identical to it.
function writeNormalisedBox(out: Float64Array, at: number, box: readonly number[], width: number, height: number): number {
  const sx = 1 / width;
  const sy = 1 / height;
  out[at] = (box[0] as number) * sx;
  out[at + 1] = (box[1] as number) * sy;
  out[at + 2] = (box[2] as number) * sx;
  out[at + 3] = (box[3] as number) * sy;
  return at + 4;
}

// A user's similarity function may return anything; the cost matrix must stay finite.
function clampSimilarity(value: number): number {
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
}

function validateWeights(weights: SpatialRewardWeights): SpatialRewardWeights {
  for (const [name, value] of Object.entries(weights))
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw new RangeError(`spatial reward weight "${name}" must be a finite number, got ${String(value)}`);
  return weights;
}
