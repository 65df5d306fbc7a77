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
  worldSeed: number;
  modelSeed: number;
  /** GRPO seeds: a dense and a sparse run each, from the same SFT checkpoint. */
  seeds: number[];
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  visionHidden: number;
  visionDepth: number;
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
  modelSeed: 1,
  seeds: [1],
  vocabSize: 1024,
  hidden: 128,
  layers: 4,
  heads: 4,
  visionHidden: 32,
  visionDepth: 2,
  sftSteps: 900,
  sftBatch: 8,
  sftLr: 4e-3,
  sftValEvery: 450,
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
  valDuringTraining: 8,
  imageSize: 56,
  hidden: 32,
  layers: 1,
  heads: 2,
  visionHidden: 16,
  visionDepth: 1,
  vocabSize: 512,
  sftSteps: 6,
  sftBatch: 8,
  sftValEvery: 3,
  grpoSteps: 2,
  promptsPerStep: 4,
  samplesPerPrompt: 4,
  maxResponseTokens: 64,
  valEvery: 2,
  evalSamples: 2,
});
