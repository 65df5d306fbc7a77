/**
 * `spatialthinker plan`: the memory plan of a recipe on paper, from a
 * config.json alone (examples/qwen2.5-vl-3b/config.json, Qwen2.5-VL-3B's
 * published architecture; no weights), for a described CUDA device.
 *  - the optimizer layouts order as their state sizes say: adamw (bf16
 *    weights + fp32 master + fp32 moments) above adamw_bf16 (bf16 moments and
 *    compensation) above either with the state offloaded to host memory;
 *  - a budget nothing fits is refused (exit 1) naming the largest items;
 *  - usage errors exit 2 with one line.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CONFIG_3B = 'examples/qwen2.5-vl-3b/config.json';
const REFERENCE = 'test/fixtures/spatialthinker-config.yaml';

function plan(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'plan', ...args], { encoding: 'utf8' });
}

interface Row {
  strategy: string;
  offload: boolean;
  fits: boolean;
  peakBytes: number;
  updatePeakBytes: number;
  hostBytes: number;
  largest: string;
}

t.test('the optimizer layouts of the 3B reference recipe order as their state sizes', async (t) => {
  const r = plan('--model', CONFIG_3B, '--config', REFERENCE, '--device', 'cuda', '--device-memory', '80GiB', 'worker.rollout.n=8', 'data.max_response_length=2048', '--compare', '--json');
  t.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as Row[];
  const find = (strategy: string, offload: boolean) => rows.find((x) => x.strategy === strategy && x.offload === offload) as Row;
  const adamw = find('adamw', false);
  const bf16 = find('adamw_bf16', false);
  const adamwOff = find('adamw', true);
  const bf16Off = find('adamw_bf16', true);
  const GiB = 2 ** 30;
  t.comment(rows.map((x) => `${x.strategy}${x.offload ? '+offload' : ''}: update ${(x.updatePeakBytes / GiB).toFixed(2)} GiB, host ${(x.hostBytes / GiB).toFixed(2)} GiB, fits ${x.fits}`).join('; '));
  t.ok(adamw.updatePeakBytes > bf16.updatePeakBytes, 'adamw needs more than adamw_bf16');
  t.ok(bf16.updatePeakBytes > bf16Off.updatePeakBytes, 'offloading adamw_bf16 needs less on the device');
  // 3.75B parameters: adamw keeps 4 + 8 bytes each (fp32 master, fp32 moments) where adamw_bf16 keeps 4 + 2 (bf16 moments, compensation) ...
  const P = 3.75e9;
  t.ok(Math.abs(adamw.updatePeakBytes - bf16.updatePeakBytes - 6 * P) < 0.05 * 6 * P, `adamw - adamw_bf16 = 6 bytes a parameter (${((adamw.updatePeakBytes - bf16.updatePeakBytes) / P).toFixed(2)})`);
  // ... and offloaded, the moments (and compensation) move to pinned host memory; adamw's fp32 master copy
  // stays on the device (every step writes the bf16 weights from it): 4 bytes a parameter more there.
  t.ok(Math.abs(adamwOff.updatePeakBytes - bf16Off.updatePeakBytes - 4 * P) < 0.05 * 4 * P, 'offloaded, adamw keeps its 4-byte master copy on the device');
  t.ok(Math.abs(adamwOff.hostBytes - 8 * P) < 0.05 * 8 * P && Math.abs(bf16Off.hostBytes - 6 * P) < 0.05 * 6 * P, 'host memory: 8 bytes a parameter (adamw moments) vs 6 (adamw_bf16)');
  t.notOk(adamw.fits, 'adamw with a reference model does not fit 80 GiB');
  t.ok(bf16Off.fits && adamwOff.fits, 'offloaded, both fit');

  const text = plan('--model', CONFIG_3B, '--config', REFERENCE, '--device', 'cuda', '--device-memory', '80GiB', 'worker.rollout.n=8', '--compare');
  t.equal(text.status, 0, text.stderr);
  t.match(text.stdout, /\| adamw\s+\| no\s+\|/);
  t.match(text.stdout, /\| adamw_bf16 \+ offload_optimizer \| yes\s+\|/);
  t.match(text.stdout, /rollout n=8, responses 2048 tokens/);
});

t.test('a budget nothing fits is refused, naming the largest items', async (t) => {
  const r = plan('--model', CONFIG_3B, '--config', REFERENCE, '--device', 'cuda', '--device-memory', '24GiB', 'worker.rollout.n=8', '--compare');
  t.equal(r.status, 1, 'exit 1: does not fit');
  t.match(r.stderr, /^spatialthinker plan: no optimizer layout fits; the smallest, adamw(_bf16)? \+ offload_optimizer: the update needs [\d.]+ GiB but a CUDA device of 24GiB: 24\.00 GiB, 90% usable; largest: /m);
  t.match(r.stderr, /largest: (activations|gradients|decode workspace) [\d.]+ GiB, /);
  const single = plan('--model', CONFIG_3B, '--config', REFERENCE, '--device', 'cuda', '--device-memory', '24GiB', 'worker.actor.offload.offload_optimizer=false', 'worker.actor.optim.strategy=adamw');
  t.equal(single.status, 1);
  t.match(single.stdout, /memory plan \(a CUDA device of 24GiB, weights bf16, activations bf16, gradients fp32, optimizer adamw\)/);
  t.match(single.stderr, /does not fit: .*largest: AdamW moments 27\.97 GiB, .*worker\.actor\.offload\.offload_optimizer=true/);
});

t.test('a model directory reads its config.json; usage errors exit 2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-plan-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(JSON.parse(spawnSync('cat', [CONFIG_3B], { encoding: 'utf8' }).stdout)));
  const fromDir = plan('--model', dir, '--device', 'cuda', '--device-memory', '80GiB', 'data.max_prompt_length=1024', 'data.max_response_length=1024', 'algorithm.kl_coef=0', '--json');
  t.equal(fromDir.status, 0, fromDir.stderr);
  t.equal((JSON.parse(fromDir.stdout) as { optimizer: { strategy: string } }).optimizer.strategy, 'adamw');

  const missing = plan('--config', REFERENCE);
  t.equal(missing.status, 2);
  t.match(missing.stderr, /--model DIR\|CONFIG\.json is required/);
  const typo = plan('--model', CONFIG_3B, '--devise', 'cuda');
  t.equal(typo.status, 2);
  t.match(typo.stderr, /unknown option --devise.*--device/);
  const size = plan('--model', CONFIG_3B, '--device', 'cuda', '--device-memory', 'lots');
  t.equal(size.status, 2);
  t.match(size.stderr, /--device-memory: "lots" is not a size/);
  const key = plan('--model', CONFIG_3B, 'worker.rollout.nn=8');
  t.equal(key.status, 2);
  t.match(key.stderr, /worker\.rollout\.nn/);
  const nofile = plan('--model', join(dir, 'nope.json'));
  t.equal(nofile.status, 1);
  t.match(nofile.stderr, /--model: cannot read .*nope\.json: no such file/);
  const cmd = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'plna'], { encoding: 'utf8' });
  t.equal(cmd.status, 2);
  t.match(cmd.stderr, /unknown command "plna".*plan/);
});
