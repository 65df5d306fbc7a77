/** Synthetic training-run directories (the format lib/rl/run-log.ts writes) for the report tests. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

/**
 * A PNG of `width` x `height`: grey, with the two ground-truth objects (boxes
 * given in a 320 x 320 frame) painted where GROUND_TRUTH puts them.
 */
export async function writePng(path: string, width: number, height: number): Promise<void> {
  const sx = width / 320;
  const sy = height / 320;
  const rect = ([x1, y1, x2, y2]: number[], fill: string) =>
    `<rect x="${x1! * sx}" y="${y1! * sy}" width="${(x2! - x1!) * sx}" height="${(y2! - y1!) * sy}" fill="${fill}"/>`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<rect width="100%" height="100%" fill="#808080"/>${rect([64, 96, 160, 192], '#c03030')}${rect([176, 160, 288, 256], '#3030c0')}</svg>`;
  await sharp(Buffer.from(svg)).png().toFile(path);
}

export const GROUND_TRUTH =
  '<scene>{"objects": [{"id": "cube.1", "bbox": [64, 96, 160, 192]}, {"id": "ball.2", "bbox": [176, 160, 288, 256]}], ' +
  '"relationships": [{"subject": "cube.1", "predicate": "left of", "object": "ball.2"}]}</scene>\n<answer>(A) left of</answer>';

export function completionText(dx: number, answer = '(A) left of'): string {
  return (
    `<observe>A red cube and a blue ball.</observe>\n<scene>{"objects": [{"id": "cube.1", "bbox": [${64 + dx}, 96, ${160 + dx}, 192]}, ` +
    `{"id": "ball.2", "bbox": [176, 160, 288, 256]}], "relationships": []}</scene>\n<think>The cube is left of the ball & not "behind" it.</think>\n<answer>${answer}</answer>`
  );
}

export interface GrpoRunOptions {
  steps: number;
  /** Extra raw lines appended to metrics.jsonl after the valid ones. */
  badMetricLines?: string[];
  /** Leave the last metrics line without its newline and cut short. */
  truncatedLast?: boolean;
  /** Added to every train metric but the learning rate (a second seed of an arm). */
  offset?: number;
}

export const GRPO_TRAIN_METRICS = [
  'reward/overall', 'reward/format', 'reward/count', 'reward/accuracy', 'reward/spatial', 'accuracy',
  'response_length/mean', 'response_length/max', 'response_length/clip_ratio',
  'actor/pg_loss', 'actor/kl_loss', 'actor/ppo_kl', 'actor/grad_norm', 'actor/lr', 'actor/entropy_loss',
  'timing/generation', 'timing/reward', 'timing/update', 'timing/step',
];
export const GRPO_VAL_METRICS = ['val/accuracy', 'val/format_rate', 'val/ciou', 'val/reward/overall', 'val/accuracy/relation', 'val/accuracy/count'];

/**
 * A GRPO run: metrics for steps 1..steps, validation at 0 and every 5 steps,
 * two train samples per step (image relative to the run), a val sample per
 * validation (absolute image path), one sample whose image is missing and one
 * on a large image.
 */
export async function writeGrpoRun(dir: string, options: GrpoRunOptions): Promise<void> {
  mkdirSync(join(dir, 'images'), { recursive: true });
  mkdirSync(join(dir, 'checkpoints', 'step-000005'), { recursive: true });
  mkdirSync(join(dir, 'tensorboard'), { recursive: true });
  writeFileSync(join(dir, 'tensorboard', 'events.out.tfevents.1700000000.host'), '');
  writeFileSync(join(dir, 'config.yaml'), 'algorithm:\n  kl_coef: 0.01\nworker:\n  rollout:\n    n: 8\n');
  await writePng(join(dir, 'images', 'scene.png'), 320, 320);
  await writePng(join(dir, 'images', 'big.png'), 1280, 1280);

  const lines: string[] = [];
  const samples: string[] = [];
  const time = (step: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, step * 30)).toISOString();
  const validate = (step: number) => {
    const v = Object.fromEntries(GRPO_VAL_METRICS.map((m, i) => [m, 0.2 + 0.05 * step + 0.01 * i]));
    lines.push(JSON.stringify({ step, split: 'val', time: time(step), ...v }));
    samples.push(
      JSON.stringify({
        step, split: 'val', index: 0, image_id: 'val-1', image: join(dir, 'images', 'scene.png'), image_size: [320, 320],
        category: 'relation', question: 'Is the cube left of the ball?', completion: completionText(20 - step),
        ground_truth: GROUND_TRUTH, reward: { overall: 0.5 + step / 100, format: 1, count: 1, accuracy: 1, spatial: 0.4 },
      }),
    );
  };
  validate(0);
  for (let step = 1; step <= options.steps; step++) {
    const m: Record<string, number | string> = { step, split: 'train', time: time(step), note: 'not a metric' } as never;
    GRPO_TRAIN_METRICS.forEach((name, i) => (m[name] = Math.sin(step / 3 + i) + i + (options.offset ?? 0)));
    m['actor/lr'] = 1e-6;
    lines.push(JSON.stringify(m));
    for (let index = 0; index < 2; index++)
      samples.push(
        JSON.stringify({
          step, split: 'train', index, image_id: `train-${step}`, image: 'images/scene.png', image_size: [320, 320], category: 'relation',
          question: 'Where is the cube relative to the ball?', completion: completionText(8 * index),
          ground_truth: GROUND_TRUTH, reward: { overall: 0.25 * index, format: 1, count: 1, accuracy: index, spatial: 0.3 }, advantage: index ? 0.7 : -0.7,
        }),
      );
    if (step % 5 === 0) validate(step);
  }
  // The last step also shows a missing image, a large image and markup in the completion.
  const last = options.steps;
  samples.push(
    JSON.stringify({ step: last, split: 'train', index: 2, image: 'images/gone.png', image_size: [320, 320], completion: 'no scene <b>here</b>', ground_truth: GROUND_TRUTH, reward: { overall: 0 }, advantage: -1 }),
    JSON.stringify({ step: last, split: 'train', index: 3, image: 'images/big.png', image_size: [320, 320], completion: completionText(0) + '<script>alert(1)</script>', ground_truth: GROUND_TRUTH, reward: { overall: 1 }, advantage: 1 }),
  );
  let text = lines.join('\n') + '\n' + (options.badMetricLines ?? []).map((l) => l + '\n').join('');
  if (options.truncatedLast) text += JSON.stringify({ step: last + 1, split: 'train', 'reward/overall': 0.9 }).slice(0, 20);
  writeFileSync(join(dir, 'metrics.jsonl'), text);
  writeFileSync(join(dir, 'samples.jsonl'), samples.join('\n') + '\n');
}

export const SFT_METRICS = ['sft/loss', 'actor/grad_norm', 'actor/lr'];

/** An SFT run of `steps` steps; with `valEvery`, validation lines (val/accuracy, val/samples) every that many steps. */
export function writeSftRun(dir: string, steps: number, valEvery?: number): void {
  mkdirSync(dir, { recursive: true });
  const lines = [];
  for (let step = 1; step <= steps; step++) {
    lines.push(JSON.stringify({ step, split: 'train', 'sft/loss': 3 / step, 'actor/grad_norm': 1 + 1 / step, 'actor/lr': 1e-5 }));
    if (valEvery && step % valEvery === 0) lines.push(JSON.stringify({ step, split: 'val', 'val/accuracy': step / 100, 'val/samples': 16 }));
  }
  writeFileSync(join(dir, 'metrics.jsonl'), lines.join('\n') + '\n');
}

/**
 * A demo directory as `spatialthinker demo --seeds 1,2` lays it out, smaller:
 * an SFT run of 12 steps validating every 4, two seeds of grpo-dense and one
 * of grpo-sparse (10 steps each), and summary.json with its table and the
 * held-out results per policy and seed.
 */
export async function writeDemo(dir: string): Promise<void> {
  writeSftRun(join(dir, 'sft'), 12, 4);
  await writeGrpoRun(join(dir, 'grpo-dense-seed1'), { steps: 10 });
  await writeGrpoRun(join(dir, 'grpo-dense-seed2'), { steps: 10, offset: 0.5 });
  await writeGrpoRun(join(dir, 'grpo-sparse-seed1'), { steps: 10, offset: -0.25 });
  const result = (policy: string, seed: number | null, accuracy: number, ciou: number) => ({
    policy, seed, checkpoint: `${dir}/x`, metrics: { 'val/accuracy': accuracy, 'val/format_rate': 1, 'val/ciou': ciou, 'val/samples': 200 },
  });
  writeFileSync(
    join(dir, 'summary.json'),
    JSON.stringify({
      table: [{ run: 'sft', accuracy: 0.31 }, { run: 'grpo-dense', accuracy: 0.4567891, note: 'dense <reward>' }],
      results: [result('sft', null, 0.31, 0.2), result('grpo-dense', 1, 0.4, 0.3), result('grpo-dense', 2, 0.5, 0.4), result('grpo-sparse', 1, 0.3, 0.25)],
      options: { valRows: 50, evalSamples: 4, evalTemperature: 0.5, seeds: [1, 2] },
      seed: 7,
    }),
  );
}
