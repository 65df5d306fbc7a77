/** `spatialthinker demo`: the whole SpatialThinker method on a CPU in minutes, nothing downloaded. */
import { parseArgs } from './args.js';
import { Demo, formatSummary } from '../demo/demo.js';
import { DEMO_DEFAULTS, QUICK_DEMO, type DemoOptions } from '../demo/options.js';
import { writeRunReport } from '../report/run-report.js';
import { PRETRAIN_DEFAULTS, pretrainBase, type PretrainOptions } from '../demo/pretrain.js';
import { CliError, UsageError } from './errors.js';
import { attachConsole } from './train-console.js';

const FLAGS: Record<Exclude<keyof DemoOptions, 'out' | 'seeds' | 'threads' | 'promptKey' | 'evalGreedy' | 'base' | 'fromScratch'>, string> = {
  trainRows: 'train-rows',
  valRows: 'val-rows',
  valDuringTraining: 'val-during-training',
  imageSize: 'image-size',
  worldSeed: 'world-seed',
  secondWorldSeed: 'second-world-seed',
  secondWorldRows: 'second-world-rows',
  modelSeed: 'model-seed',
  vocabSize: 'vocab-size',
  hidden: 'hidden',
  layers: 'layers',
  heads: 'heads',
  visionHidden: 'vision-hidden',
  visionDepth: 'vision-depth',
  scratchSteps: 'scratch-steps',
  scratchLr: 'scratch-lr',
  sftSteps: 'sft-steps',
  sftBatch: 'sft-batch',
  sftLr: 'sft-lr',
  sftValEvery: 'sft-val-every',
  grpoSteps: 'grpo-steps',
  promptsPerStep: 'prompts-per-step',
  samplesPerPrompt: 'samples-per-prompt',
  grpoLr: 'grpo-lr',
  microBatch: 'micro-batch',
  maxResponseTokens: 'max-response-tokens',
  valEvery: 'val-every',
  evalSamples: 'eval-samples',
  evalTemperature: 'eval-temperature',
};

const HELP = `usage: spatialthinker demo [--out DIR] [--quick] [--seeds 1,2,3] [options]
       spatialthinker demo pretrain --out DIR [--seed S] [--steps N]  (see demo pretrain --help)

Runs the paper's protocol on the CPU: synthesises a shapes world (rendered
scenes with depth, occlusion and size, scene graphs in Visual Genome form,
STVQA-style questions) and, from one base policy (the pre-trained tiny
Qwen2.5-VL shipped in assets/demo-base), trains per seed four arms with the
same data order: SFT on the training split, GRPO with the sparse reward,
GRPO with the dense spatial reward, and GRPO with the dense reward without
its gates. Evaluates the base and every arm on the held-out split and on
rows of a second world, and writes DIR/summary.json, DIR/results.md (means
± standard errors over seeds, paired differences) and DIR/report.html.

options:
  --out DIR        run directory (default ${DEMO_DEFAULTS.out})
  --quick          a smoke run of seconds (small world, model and budget, from
                   scratch; it checks the pipeline, it learns nothing)
  --seeds LIST     arm seeds, comma-separated (default ${DEMO_DEFAULTS.seeds.join(',')})
  --base DIR       start from this base (made by demo pretrain) instead of the shipped one
  --from-scratch   no pre-trained base: a random tiny model warm-started here by
                   SFT on the training split (--scratch-steps), as before the base
  --threads N      engine threads (default: all cores)
  --prompt-key K   the row field the policy is prompted with: question_with_options
                   (the question alone) or problem (with the full SpatialThinker
                   instruction, as on STVQA) (default ${DEMO_DEFAULTS.promptKey})
  --eval-greedy    also decode every held-out row greedily and report it beside
${Object.entries(FLAGS)
  .map(([key, flag]) => `  --${flag.padEnd(22)} default ${String(DEMO_DEFAULTS[key as keyof typeof FLAGS])}${key in QUICK_DEMO ? ` (--quick: ${String(QUICK_DEMO[key as keyof typeof FLAGS])})` : ''}`)
  .join('\n')}
`;

const PRETRAIN_HELP = `usage: spatialthinker demo pretrain --out DIR [--seed S] [--steps N] [options]

Makes the demo's base policy: synthesises shapes-world rows from the
pretraining world (seed ${PRETRAIN_DEFAULTS.worldSeed}, which the demo's worlds never use), builds the
tiny Qwen2.5-VL with a tokenizer trained on them and SFT-trains it from
random weights on gold reasoning traces, so that it reads the options and
writes the four blocks before any RL. Writes a model directory with
pretrain.json (the command and settings). The package ships one in
assets/demo-base, made by the command in the README.

options:
  --out DIR        the base model directory (its scratch run goes in DIR.work)
  --seed S         weights and data-order seed (default ${PRETRAIN_DEFAULTS.seed})
  --steps N        SFT steps (default ${PRETRAIN_DEFAULTS.steps})
  --world-seed W   the pretraining world (default ${PRETRAIN_DEFAULTS.worldSeed})
  --train-rows N   pretraining rows (default ${PRETRAIN_DEFAULTS.trainRows})
  --batch N        rows per step (default ${PRETRAIN_DEFAULTS.batch})
  --lr X           peak learning rate, cosine schedule (default ${PRETRAIN_DEFAULTS.lr})
  --threads N      engine threads (default: all cores)
  --init DIR       continue from this base (made by demo pretrain) instead of
                   random weights; pretrain.json records its hash and command
`;

async function pretrainCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      seed: { type: 'string' },
      steps: { type: 'string' },
      'world-seed': { type: 'string' },
      'train-rows': { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      threads: { type: 'string' },
      init: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values['help']) {
    process.stdout.write(PRETRAIN_HELP);
    return;
  }
  if (typeof values['out'] !== 'string') throw new UsageError('demo pretrain needs --out DIR');
  const number = (flag: string, fallback: number, integer = true, min = 1): number => {
    const text = (values as Record<string, string | boolean | undefined>)[flag];
    if (typeof text !== 'string') return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) throw new UsageError(`--${flag} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got "${text}"`);
    return n;
  };
  const options: PretrainOptions = {
    out: values['out'],
    seed: number('seed', PRETRAIN_DEFAULTS.seed, true, 0),
    steps: number('steps', PRETRAIN_DEFAULTS.steps),
    worldSeed: number('world-seed', PRETRAIN_DEFAULTS.worldSeed, true, 0),
    trainRows: number('train-rows', PRETRAIN_DEFAULTS.trainRows),
    batch: number('batch', PRETRAIN_DEFAULTS.batch),
    lr: number('lr', PRETRAIN_DEFAULTS.lr, false, 0),
    threads: typeof values['threads'] === 'string' ? number('threads', 1) : undefined,
    init: values['init'],
  };
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  let detach: (() => void) | undefined;
  try {
    const result = await pretrainBase(options, {
      signal: controller.signal,
      log: (m) => process.stderr.write(m + '\n'),
      onRun: (run) => (detach = attachConsole(run, () => run.plannedSteps)),
      command: ['spatialthinker', 'demo', 'pretrain', ...argv].join(' '),
    });
    process.stdout.write(`base model: ${result.dir}\nmodel.safetensors sha256: ${result.sha256}\n`);
  } catch (error) {
    throw new CliError(error instanceof Error ? error.message : String(error));
  } finally {
    detach?.();
    process.off('SIGINT', onSignal);
  }
}

export async function demoCommand(argv: string[]): Promise<void> {
  if (argv[0] === 'pretrain') return pretrainCommand(argv.slice(1));
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    out: { type: 'string' },
    quick: { type: 'boolean' },
    seeds: { type: 'string' },
    threads: { type: 'string' },
    'prompt-key': { type: 'string' },
    'eval-greedy': { type: 'boolean' },
    base: { type: 'string' },
    'from-scratch': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  };
  for (const flag of Object.values(FLAGS)) options[flag] = { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true });
  if (values['help']) {
    process.stdout.write(HELP);
    return;
  }
  const chosen: Partial<DemoOptions> & { quick?: boolean } = { quick: Boolean(values['quick']) };
  if (typeof values['out'] === 'string') chosen.out = values['out'];
  if (values['eval-greedy']) chosen.evalGreedy = true;
  if (values['from-scratch']) chosen.fromScratch = true;
  if (typeof values['base'] === 'string') {
    if (values['from-scratch']) throw new UsageError('--base and --from-scratch exclude each other');
    chosen.base = values['base'];
    chosen.fromScratch = false;
  }
  for (const [key, flag] of Object.entries(FLAGS)) {
    const text = values[flag];
    if (typeof text !== 'string') continue;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} must be a positive number, got "${text}"`);
    const integer = !['sftLr', 'scratchLr', 'grpoLr', 'evalTemperature'].includes(key);
    if (integer && !Number.isInteger(n)) throw new UsageError(`--${flag} must be an integer, got "${text}"`);
    (chosen as Record<string, number>)[key] = n;
  }
  if (typeof values['seeds'] === 'string') {
    const seeds = values['seeds'].split(',').map((s) => Number(s.trim()));
    if (seeds.length === 0 || seeds.some((s) => !Number.isInteger(s))) throw new UsageError(`--seeds must be comma-separated integers, got "${values['seeds']}"`);
    chosen.seeds = seeds;
  }
  const promptKey = values['prompt-key'];
  if (typeof promptKey === 'string') {
    if (promptKey !== 'problem' && promptKey !== 'question_with_options') throw new UsageError(`--prompt-key must be problem or question_with_options, got "${promptKey}"`);
    chosen.promptKey = promptKey;
  }
  if (typeof values['threads'] === 'string') {
    const n = Number(values['threads']);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--threads must be a positive integer, got "${values['threads']}"`);
    chosen.threads = n;
  }

  const demo = new Demo(chosen);
  demo.command = ['spatialthinker', 'demo', ...argv].join(' ');
  const controller = new AbortController();
  const onSignal = () => {
    process.stderr.write('\nstopping (the current run saves a checkpoint)\n');
    controller.abort(new Error('interrupted'));
  };
  process.once('SIGINT', onSignal);
  const t0 = performance.now();
  demo.on('log', (m) => process.stderr.write(m + '\n'));
  demo.on('stage', (name) => process.stderr.write(`\n== ${name}\n`));
  let detach: (() => void) | undefined;
  demo.on('run', (run) => {
    detach?.();
    detach = attachConsole(run, () => run.plannedSteps);
  });
  try {
    const summary = await demo.run(controller.signal);
    const report = (await writeRunReport(summary.out)).path;
    process.stdout.write(`\n${formatSummary(summary)}\n\nreport: ${report}\nrun directory: ${summary.out} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
  } catch (error) {
    throw new CliError(error instanceof Error ? error.message : String(error));
  } finally {
    detach?.();
    process.off('SIGINT', onSignal);
  }
}
