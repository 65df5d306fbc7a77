/**
 * `spatialthinker plan --model DIR|CONFIG.json --config RECIPE [KEY=VALUE ...]`:
 * the device memory plan of a training run (lib/rl/memory-plan.ts) on paper,
 * before anything is loaded: the model is read from its config.json alone (no
 * weights), the device is described by flags when this machine has none.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseModelConfig, type ModelConfig } from '../engine/config.js';
import { deviceMemory, fmtBytes, formatMemoryPlan, parameterCount, planMemory, type BackendPrecision, type DeviceMemory, type MemoryPlan, type OptimizerLayout } from '../rl/memory-plan.js';
import { ConfigError, loadConfig, type TrainConfig } from '../rl/config.js';
import { parseArgs } from './args.js';
import { CliError, UsageError } from './errors.js';
import { modelDirectory } from './model-arg.js';

const help = `usage: spatialthinker plan --model DIR|CONFIG.json [--config RECIPE.yaml] [KEY=VALUE ...] [options]

Prints the memory plan of a training run item by item (weights, optimizer
state, gradients, reference model, activations, KV cache, workspaces) and
phase by phase (rollout, update), without loading weights: the model is its
config.json (a model directory, or the file itself). The recipe is a training
configuration (the YAML \`spatialthinker train --config\` reads) with dotted
overrides after it, e.g. worker.rollout.n=8 data.max_response_length=2048.

options:
  --model DIR|FILE        a model directory (or Hub id in the local cache) or its config.json
  --config FILE           the training recipe (YAML); default: the built-in defaults
  --device cpu|cuda       the device to plan for (default: the recipe's trainer.device)
  --device-memory SIZE    the device's memory, e.g. 80GiB, 40GB (default: this machine's
                          RAM for cpu, its first CUDA device for cuda; required for cuda
                          when there is none here)
  --runtime-memory SIZE   CUDA context, libraries and other processes on the device
                          (default 1GiB, an estimate; a real run measures it)
  --precision bf16|fp32   what the CUDA backend stores weights, activations and the KV
                          cache in (default bf16, as it stores them; the CPU stores fp32)
  --compare               one line per optimizer layout: adamw, adamw_bf16, each with
                          and without worker.actor.offload.offload_optimizer
  --json                  the plan (or the comparison) as JSON

Exit codes: 0 the plan fits (with --compare: one layout fits), 1 it does not
(the message names the largest items and what would fix it), 2 usage error.
`;

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

/** "80GiB" -> 80 * 2^30, "40GB" -> 4e10, a bare number is bytes. */
export function parseMemorySize(flag: string, text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match?.[2]?.toUpperCase() ?? '';
  const factor = unit === '' ? 1 : UNITS[unit];
  if (!match || factor === undefined) throw new UsageError(`${flag}: "${text}" is not a size (use bytes, or e.g. 80GiB, 40GB, 512MiB)`);
  const bytes = Math.floor(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new UsageError(`${flag}: "${text}" must be at least 1 byte`);
  return bytes;
}

/** The model's configuration from a config.json file or a model directory's. */
async function readModel(arg: string): Promise<{ model: ModelConfig; file: string }> {
  let file = arg;
  let isDirectory = false;
  try {
    isDirectory = (await stat(arg)).isDirectory();
  } catch {
    // not a local path: a Hub id in the local cache, or a usage error below
    if (!arg.endsWith('.json')) file = modelDirectory(arg, '--model');
    isDirectory = !arg.endsWith('.json');
  }
  if (isDirectory) file = join(file, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CliError(`--model: cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new CliError(`${file}: not JSON: ${(error as Error).message}`);
  }
  return { model: parseModelConfig(raw, file), file };
}

/** The layouts --compare plans, in the order the table lists them. */
const LAYOUTS: readonly OptimizerLayout[] = [
  { strategy: 'adamw', offload: false },
  { strategy: 'adamw_bf16', offload: false },
  { strategy: 'adamw', offload: true },
  { strategy: 'adamw_bf16', offload: true },
];

const layoutName = (o: OptimizerLayout) => `${o.strategy}${o.offload ? ' + offload_optimizer' : ''}`;

/** The three largest items on the device in the plan's higher phase. */
export function largestItems(plan: MemoryPlan, count = 3): string {
  const phase = plan.updatePeakBytes >= plan.rolloutPeakBytes ? 'update' : 'rollout';
  return plan.items
    .filter((i) => i.bytes > 0 && (i.phase === 'resident' || i.phase === phase))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, count)
    .map((i) => `${i.name} ${fmtBytes(i.bytes)}`)
    .join(', ');
}

export async function planCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      config: { type: 'string' },
      device: { type: 'string' },
      'device-memory': { type: 'string' },
      'runtime-memory': { type: 'string' },
      precision: { type: 'string' },
      compare: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(help);
    return;
  }
  if (values.model === undefined) throw new UsageError('--model DIR|CONFIG.json is required (--help shows the usage)');
  const bad = positionals.find((p) => !p.includes('='));
  if (bad !== undefined) throw new UsageError(`unexpected argument "${bad}": overrides are KEY=VALUE (--help shows the usage)`);
  if (values.device !== undefined && values.device !== 'cpu' && values.device !== 'cuda') throw new UsageError(`--device must be cpu or cuda, got "${values.device}"`);
  if (values.precision !== undefined && values.precision !== 'bf16' && values.precision !== 'fp32') throw new UsageError(`--precision must be bf16 or fp32, got "${values.precision}"`);

  let config: TrainConfig;
  try {
    config = await loadConfig({
      // The plan needs no data or weights: these stand in when the recipe leaves them out.
      base: { data: { train_files: '(not read by plan)' }, worker: { actor: { model: { model_path: values.model } } } },
      ...(values.config !== undefined ? { file: values.config } : {}),
      overrides: positionals,
    });
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message);
    throw error;
  }
  const { model } = await readModel(values.model);
  const kind = (values.device as 'cpu' | 'cuda' | undefined) ?? config.trainer.device;
  config.trainer.device = kind;
  if (kind === 'cpu' && values.precision === 'bf16') throw new UsageError('--precision bf16: the CPU backend stores fp32');
  const precision: BackendPrecision = kind === 'cuda' && values.precision !== 'fp32' ? { weights: 'bf16', activations: 'bf16' } : { weights: 'fp32', activations: 'fp32' };

  const device = describeDevice(kind, values['device-memory'], values['runtime-memory'], model, precision);
  const plan = (optimizer?: OptimizerLayout) => planMemory({ config, model, device, precision, ...(optimizer ? { optimizer } : {}) });

  if (!values.compare) {
    const p = plan();
    process.stdout.write((values.json ? JSON.stringify(p, null, 2) : formatMemoryPlan(p)) + '\n');
    if (!p.fits) throw new CliError(`does not fit: ${p.messages[0] ?? `peak ${fmtBytes(p.peakBytes)}`}`);
    return;
  }
  const plans = LAYOUTS.map((o) => ({ layout: o, plan: plan(o) }));
  if (values.json) {
    process.stdout.write(JSON.stringify(plans.map(({ layout, plan }) => ({ ...layout, fits: plan.fits, peakBytes: plan.peakBytes, updatePeakBytes: plan.updatePeakBytes, rolloutPeakBytes: plan.rolloutPeakBytes, hostBytes: plan.hostBytes, largest: largestItems(plan), messages: plan.messages })), null, 2) + '\n');
  } else {
    process.stdout.write(
      `${device.name}: ${fmtBytes(device.totalBytes)}, ${kind === 'cuda' ? `weights/activations/KV ${precision.weights}, ` : ''}gradients fp32; ` +
        `rollout n=${config.worker.rollout.n}, responses ${config.data.max_response_length} tokens, prompts ${config.data.max_prompt_length} tokens, ` +
        `micro-batch ${config.worker.actor.micro_batch_size_per_device_for_update}, reference model ${config.algorithm.disable_kl || !config.algorithm.use_kl_loss || config.algorithm.kl_coef <= 0 ? 'no' : 'yes'}\n\n` +
        table(
          ['optimizer', 'fits', 'peak', 'update peak', 'rollout peak', 'pinned host', 'largest on the device'],
          plans.map(({ layout, plan }) => [layoutName(layout), plan.fits ? 'yes' : 'no', fmtBytes(plan.peakBytes), fmtBytes(plan.updatePeakBytes), fmtBytes(plan.rolloutPeakBytes), plan.hostBytes > 0 ? fmtBytes(plan.hostBytes) : '-', largestItems(plan)]),
        ) +
        '\n',
    );
  }
  if (!plans.some((p) => p.plan.fits)) {
    const best = plans.reduce((a, b) => (b.plan.peakBytes < a.plan.peakBytes ? b : a));
    throw new CliError(`no optimizer layout fits; the smallest, ${layoutName(best.layout)}: ${best.plan.messages[0] ?? ''}`);
  }
}

/**
 * The device planned for: the flags', else this machine's. On paper a CUDA
 * device is its total memory with the runtime's share already used, as the
 * plan of a real run sees it once the policy's weights are loaded.
 */
function describeDevice(kind: 'cpu' | 'cuda', memoryFlag: string | undefined, runtimeFlag: string | undefined, model: ModelConfig, precision: BackendPrecision): DeviceMemory {
  if (kind === 'cpu') {
    const here = deviceMemory('cpu');
    if (memoryFlag === undefined) return here;
    const total = parseMemorySize('--device-memory', memoryFlag);
    return { device: 'cpu', name: `host memory (${memoryFlag})`, totalBytes: total, freeBytes: total };
  }
  let total: number;
  let name: string;
  if (memoryFlag !== undefined) {
    total = parseMemorySize('--device-memory', memoryFlag);
    name = `a CUDA device of ${memoryFlag}`;
  } else {
    let here: DeviceMemory;
    try {
      here = deviceMemory('cuda');
    } catch (error) {
      throw new UsageError(`--device cuda: there is no CUDA device here (${(error as Error).message.replace(/^trainer\.device is cuda but /, '')}); give --device-memory, e.g. 80GiB`);
    }
    total = here.totalBytes;
    name = here.name;
  }
  const runtime = parseMemorySize('--runtime-memory', runtimeFlag ?? '1GiB');
  const weights = planWeightsBytes(model, precision);
  return { device: 'cuda', name, totalBytes: total, freeBytes: total - weights - runtime };
}

/** planMemory takes the runtime as what the device uses beside the policy's weights. */
function planWeightsBytes(model: ModelConfig, precision: BackendPrecision): number {
  return parameterCount(model) * (precision.weights === 'bf16' ? 2 : 4);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
