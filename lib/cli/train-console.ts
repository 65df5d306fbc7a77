/**
 * The trainers' console: a progress bar per phase of a step (on a terminal)
 * with its rate and time left, a summary line per step (SFT: every N steps,
 * its loss the mean over them) with the run's time left, one per validation,
 * and the trainer's messages. metrics.jsonl keeps every step whatever is printed.
 */
import type { TrainingRun } from '../rl/run.js';
import type { Metrics } from '../rl/run-log.js';
import { etaText, formatDuration, rateText } from './progress.js';

/** SFT steps are short: a line every this many unless --log-every says otherwise. GRPO steps print each. */
export const SFT_LOG_EVERY = 10;

export interface ConsoleOptions {
  /** A summary line every this many steps (and for the last); default SFT_LOG_EVERY for SFT runs, 1 for GRPO. */
  logEvery?: number;
  out?: NodeJS.WriteStream;
}

const fmt = (v: number | undefined, digits = 3) => (v === undefined ? '-' : Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(digits) : v.toExponential(1));

function bar(done: number, total: number, width = 24): string {
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
}

/** One step's summary; `lossSteps` > 1 says the SFT loss is the mean over that many steps. */
export function trainLine(step: number, total: number, m: Metrics, lossSteps = 1): string {
  const parts = [`step ${step}/${total}`];
  if (m['sft/loss'] !== undefined) parts.push(`loss ${fmt(m['sft/loss'])}${lossSteps > 1 ? ` (mean of ${lossSteps} steps)` : ''}`);
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
export function attachConsole(run: TrainingRun, totalSteps: () => number, options: ConsoleOptions = {}): () => void {
  const out = options.out ?? process.stderr;
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
  let phaseKey = '';
  let phaseStart = 0;
  const onProgress = (e: { step: number; phase: string; done: number; total: number }) => {
    if (!interactive) return;
    const now = Date.now();
    if (`${e.step}/${e.phase}` !== phaseKey) {
      phaseKey = `${e.step}/${e.phase}`;
      phaseStart = now;
    }
    if (now - last < 100 && e.done < e.total) return;
    last = now;
    const seconds = (now - phaseStart) / 1000;
    const pace = e.done > 0 && seconds > 0 ? `  ${rateText(e.done, seconds)}/s${etaText(e.done, e.total, seconds)}` : '';
    out.write(`\r\x1b[Kstep ${e.step} ${e.phase.padEnd(12)} ${bar(e.done, e.total)}${pace}`);
    live = true;
  };
  // The run's time left: the mean time of the steps seen so far (validations included) times the steps to go.
  const attachedAt = Date.now();
  let firstStep: number | undefined;
  const losses: number[] = [];
  const onMetrics = (e: { step: number; split: string; metrics: Metrics }) => {
    if (e.split === 'val') {
      clear();
      out.write(validationLine(e.step, e.metrics) + '\n');
      return;
    }
    const total = totalSteps();
    const sft = e.metrics['sft/loss'] !== undefined;
    if (sft) losses.push(e.metrics['sft/loss']!);
    const every = options.logEvery ?? (sft ? SFT_LOG_EVERY : 1);
    firstStep ??= e.step - 1;
    if (e.step % every !== 0 && e.step !== total && e.step !== firstStep + 1) return;
    const metrics = sft && losses.length > 1 ? { ...e.metrics, 'sft/loss': losses.reduce((a, b) => a + b, 0) / losses.length } : e.metrics;
    const seconds = (Date.now() - attachedAt) / 1000;
    const eta = etaText(e.step - firstStep, total - firstStep, seconds);
    clear();
    out.write(`${trainLine(e.step, total, metrics, losses.length)}${eta ? `  |${eta.slice(1)} (${formatDuration(seconds)} so far)` : ''}\n`);
    losses.length = 0;
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
