/**
 * The trainers' console: a progress bar per phase of a step (on a terminal),
 * a summary line per step and per validation, and the trainer's messages.
 */
import type { TrainingRun } from '../rl/run.js';
import type { Metrics } from '../rl/run-log.js';

const fmt = (v: number | undefined, digits = 3) => (v === undefined ? '-' : Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(digits) : v.toExponential(1));

function bar(done: number, total: number, width = 24): string {
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
}

export function trainLine(step: number, total: number, m: Metrics): string {
  const parts = [`step ${step}/${total}`];
  if (m['sft/loss'] !== undefined) parts.push(`loss ${fmt(m['sft/loss'])}`);
  if (m['reward/overall'] !== undefined) {
    const components = ['format', 'count', 'accuracy', 'spatial'].filter((c) => m[`reward/${c}`] !== undefined).map((c) => `${c.slice(0, 3)} ${fmt(m[`reward/${c}`], 2)}`);
    parts.push(`reward ${fmt(m['reward/overall'])}${components.length ? ` (${components.join(' ')})` : ''}`);
  }
  if (m['accuracy'] !== undefined) parts.push(`acc ${fmt(m['accuracy'], 2)}`);
  if (m['response_length/mean'] !== undefined) parts.push(`len ${m['response_length/mean'].toFixed(0)}`);
  if (m['actor/kl_loss'] !== undefined) parts.push(`kl ${fmt(m['actor/kl_loss'])}`);
  if (m['actor/grad_norm'] !== undefined) parts.push(`gnorm ${fmt(m['actor/grad_norm'], 2)}`);
  if (m['actor/lr'] !== undefined) parts.push(`lr ${m['actor/lr'].toExponential(1)}`);
  const timing = ['generation', 'reward', 'old_logprobs', 'ref_logprobs', 'update']
    .filter((t) => m[`timing/${t}`] !== undefined)
    .map((t) => `${t.replace('_logprobs', '-lp')} ${m[`timing/${t}`]!.toFixed(1)}s`);
  if (m['timing/step'] !== undefined) timing.push(`step ${m['timing/step'].toFixed(1)}s`);
  return `${parts.join('  ')}${timing.length ? '  | ' + timing.join(' ') : ''}`;
}

export function validationLine(step: number, m: Metrics): string {
  const cats = Object.keys(m)
    .filter((k) => k.startsWith('val/accuracy/'))
    .map((k) => `${k.slice('val/accuracy/'.length)} ${fmt(m[k], 2)}`);
  return `validation @ step ${step}: accuracy ${fmt(m['val/accuracy'])}  format ${fmt(m['val/format_rate'], 2)}  ciou ${fmt(m['val/ciou'])}  reward ${fmt(m['val/reward/overall'])}${cats.length ? `  [${cats.join(', ')}]` : ''}`;
}

/** Prints a run's events to stderr; returns a function that detaches it. */
export function attachConsole(run: TrainingRun, totalSteps: () => number, out: NodeJS.WriteStream = process.stderr): () => void {
  const interactive = Boolean(out.isTTY);
  let live = false;
  const clear = () => {
    if (live) out.write('\r\x1b[K');
    live = false;
  };
  const onLog = (message: string) => {
    clear();
    out.write(message + '\n');
  };
  let last = 0;
  const onProgress = (e: { step: number; phase: string; done: number; total: number }) => {
    if (!interactive) return;
    const now = Date.now();
    if (now - last < 100 && e.done < e.total) return;
    last = now;
    out.write(`\r\x1b[Kstep ${e.step} ${e.phase.padEnd(12)} ${bar(e.done, e.total)}`);
    live = true;
  };
  const onMetrics = (e: { step: number; split: string; metrics: Metrics }) => {
    clear();
    out.write((e.split === 'val' ? validationLine(e.step, e.metrics) : trainLine(e.step, totalSteps(), e.metrics)) + '\n');
  };
  run.on('log', onLog);
  run.on('progress', onProgress);
  run.on('metrics', onMetrics);
  return () => {
    clear();
    run.off('log', onLog);
    run.off('progress', onProgress);
    run.off('metrics', onMetrics);
  };
}
