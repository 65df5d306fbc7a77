/** The demo's sizes and budgets; every one is a `spatialthinker demo` flag. */
export interface DemoOptions {
  out: string;
  /** Questions in the training split and the held-out split. */
  trainRows: number;
  valRows: number;
  /** Held-out rows validated during training (the final evaluation uses all). */
  valDuringTraining: number;
  imageSize: number;
  /**
   * The row field the policy is prompted with: \`problem\` (the full SpatialThinker
   * instruction, as on STVQA) or \`question_with_options\` (the question alone). A
   * model trained from scratch learns the format from its SFT traces, not from the
   * instruction, which is 700 of its 760 prompt tokens on the tiny tokenizer.
   */
  promptKey: 'problem' | 'question_with_options';
  /** The demo's world: its training split and held-out split. */
  worldSeed: number;
  /** The second world every policy is also evaluated on (rows of its held-out split). */
  secondWorldSeed: number;
  secondWorldRows: number;
  /** The base model directory the arms start from (default: the shipped assets/demo-base). */
  base: string | undefined;
  /** No shipped base: a random tiny model warm-started here by SFT on the training split (`scratchSteps`). */
  fromScratch: boolean;
  /** Seed of the random weights (from scratch only). */
  modelSeed: number;
  /** Arm seeds: each seed runs the four arms (SFT, sparse, dense, ungated dense) from the same base with the same data order. */
  seeds: number[];
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  visionHidden: number;
  visionDepth: number;
  /** From scratch: the warm start's SFT steps (batch sftBatch) and peak learning rate (cosine). */
  scratchSteps: number;
  scratchLr: number;
  /** The SFT arm: steps of sftBatch gold traces at a constant sftLr. */
  sftSteps: number;
  sftBatch: number;
  sftLr: number;
  /** SFT validates on the held-out rows every this many steps (GRPO every valEvery). */
  sftValEvery: number;
  grpoSteps: number;
  promptsPerStep: number;
  samplesPerPrompt: number;
  grpoLr: number;
  microBatch: number;
  maxResponseTokens: number;
  valEvery: number;
  /**
   * Completions sampled per held-out row at \`evalTemperature\` for the final
   * evaluation (the paper validates at temperature 0.5): the metrics are their
   * means.
   */
  evalSamples: number;
  evalTemperature: number;
  /** Also decode each held-out row greedily and report it beside (`greedy/` metrics). */
  evalGreedy: boolean;
  threads: number | undefined;
}

export const DEMO_DEFAULTS: Readonly<DemoOptions> = Object.freeze({
  out: 'runs/demo',
  trainRows: 4000,
  valRows: 100,
  valDuringTraining: 16,
  imageSize: 112,
  promptKey: 'question_with_options',
  worldSeed: 1,
  secondWorldSeed: 2,
  secondWorldRows: 100,
  base: undefined,
  fromScratch: false,
  modelSeed: 1,
  seeds: [1],
  vocabSize: 1024,
  hidden: 128,
  layers: 4,
  heads: 4,
  visionHidden: 32,
  visionDepth: 2,
  scratchSteps: 900,
  scratchLr: 4e-3,
  sftSteps: 20,
  sftBatch: 8,
  sftLr: 4e-4,
  sftValEvery: 10,
  grpoSteps: 20,
  promptsPerStep: 8,
  samplesPerPrompt: 8,
  grpoLr: 2e-4,
  microBatch: 16,
  maxResponseTokens: 384,
  valEvery: 10,
  evalSamples: 4,
  evalTemperature: 0.5,
  evalGreedy: false,
  threads: undefined,
});

/** `--quick`: the smoke run of the tests (seconds: it checks the pipeline, it learns nothing). */
export const QUICK_DEMO: Partial<DemoOptions> = Object.freeze({
  trainRows: 48,
  valRows: 12,
  secondWorldRows: 12,
  fromScratch: true,
  valDuringTraining: 8,
  imageSize: 56,
  hidden: 32,
  layers: 1,
  heads: 2,
  visionHidden: 16,
  visionDepth: 1,
  vocabSize: 512,
  scratchSteps: 6,
  sftSteps: 2,
  sftBatch: 8,
  sftValEvery: 3,
  grpoSteps: 2,
  promptsPerStep: 4,
  samplesPerPrompt: 4,
  maxResponseTokens: 64,
  valEvery: 2,
  evalSamples: 2,
});

/** M-RoPE's split of half the head dimension into temporal, height and width (Qwen: 16/24/24 of 64). */
export function mropeSection(headDim: number): [number, number, number] {
  const half = headDim / 2;
  if (!Number.isInteger(half) || half < 3) throw new RangeError(`head dimension ${headDim} is too small for M-RoPE`);
  const temporal = Math.floor(half / 4);
  const height = Math.floor((half - temporal) / 2);
  return [temporal, height, half - temporal - height];
}
