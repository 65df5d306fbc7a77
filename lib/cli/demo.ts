/** `spatialthinker demo`: the whole SpatialThinker method on a CPU in minutes, nothing downloaded. */
import { parseArgs } from './args.js';
import { Demo, formatSummary } from '../demo/demo.js';
import { DEMO_DEFAULTS, QUICK_DEMO, type DemoOptions } from '../demo/options.js';
import { writeRunReport } from '../report/run-report.js';
import { CliError, UsageError } from './errors.js';
import { attachConsole } from './train-console.js';

const FLAGS: Record<Exclude<keyof DemoOptions, 'out' | 'seeds' | 'threads' | 'promptKey' | 'evalGreedy'>, string> = {
  trainRows: 'train-rows',
  valRows: 'val-rows',
  valDuringTraining: 'val-during-training',
  imageSize: 'image-size',
  worldSeed: 'world-seed',
  modelSeed: 'model-seed',
  vocabSize: 'vocab-size',
  hidden: 'hidden',
  layers: 'layers',
  heads: 'heads',
  visionHidden: 'vision-hidden',
  visionDepth: 'vision-depth',
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

const HELP = `usage: spatialthinker demo [--out DIR] [--quick] [options]

Runs the SpatialThinker method end to end on the CPU: synthesises a shapes
world (rendered scenes with depth, occlusion and size, scene graphs in Visual
Genome form, STVQA-style questions), builds a tiny Qwen2.5-VL with a
tokenizer trained on its corpus, warm-starts it by SFT on gold reasoning
traces, runs GRPO from that checkpoint with the dense spatial reward and with
the sparse baseline (same budget and seeds), evaluates all three on the
held-out split, and writes DIR/summary.json and DIR/report.html.

options:
  --out DIR        run directory (default ${DEMO_DEFAULTS.out})
  --quick          a smoke run of seconds (about 12 s on 2 CPU cores: small world,
                   model and budget; it checks the pipeline, it learns nothing)
  --seeds LIST     GRPO seeds, comma-separated (default ${DEMO_DEFAULTS.seeds.join(',')})
  --threads N      engine threads (default: all cores)
  --prompt-key K   the row field the policy is prompted with: question_with_options
                   (the question alone) or problem (with the full SpatialThinker
                   instruction, as on STVQA) (default ${DEMO_DEFAULTS.promptKey})
  --eval-greedy    also decode every held-out row greedily and report it beside
${Object.entries(FLAGS)
  .map(([key, flag]) => `  --${flag.padEnd(22)} default ${String(DEMO_DEFAULTS[key as keyof typeof FLAGS])}${key in QUICK_DEMO ? ` (--quick: ${String(QUICK_DEMO[key as keyof typeof FLAGS])})` : ''}`)
  .join('\n')}
`;

export async function demoCommand(argv: string[]): Promise<void> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    out: { type: 'string' },
    quick: { type: 'boolean' },
    seeds: { type: 'string' },
    threads: { type: 'string' },
    'prompt-key': { type: 'string' },
    'eval-greedy': { type: 'boolean' },
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
  for (const [key, flag] of Object.entries(FLAGS)) {
    const text = values[flag];
    if (typeof text !== 'string') continue;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} must be a positive number, got "${text}"`);
    const integer = !['sftLr', 'grpoLr', 'evalTemperature'].includes(key);
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
