/**
 * Data-parallel training on the CPU: 2 ranks on 127.0.0.1 through Gloo,
 * each a process started as a launcher starts it, against 1 rank on the
 * same global batch.
 *
 * What is bit for bit and what is not:
 * - ZeRO-1 against the replicated optimiser, both on 2 ranks: the same
 *   all-reduced gradients, an elementwise AdamW on a range or on the whole,
 *   the norm from the same per-range partial sums: bit for bit (weights and
 *   moments).
 * - A resume, on the same world size or another one, against the run it
 *   continues: bit for bit.
 * - 2 ranks against 1: the loss of the first step agrees to 1e-12 relative
 *   (each token's log-prob does not depend on the rest of the batch; the
 *   micro-batch losses are added in another grouping, in doubles), but the gradients
 *   are summed in another order: 1 rank adds micro-batch after micro-batch
 *   into one buffer inside the kernels, 2 ranks add their two buffers in the
 *   all-reduce. fp32 re-association moves a gradient element by a few units
 *   in the last place of the terms summed (2^-24 relative per addition), so
 *   the gradient norms agree to 1e-6 relative (measured 5e-9 to 3e-8). AdamW
 *   divides each gradient element by its own running size, so an element
 *   whose terms cancel (GRPO's zero-mean advantages cancel within a group)
 *   carries rounding noise into a step of up to lr: the weights are held to
 *   |w2 - w1| <= 1e-3 |w1 - w0| over all values (the difference is small
 *   beside the update), and every element to AdamW's largest possible move
 *   over the steps, twice. A reduction that lost a rank's share or used a
 *   wrong divisor fails the loss and norm checks (and the first bound) by
 *   orders of magnitude.
 */
import t, { type Test } from 'tap';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../lib/native/binding.js';
import { readSafetensors } from '../lib/io/safetensors.js';
import { GrpoTrainer } from '../lib/rl/grpo-trainer.js';
import { SftTrainer } from '../lib/rl/sft-trainer.js';
import { writeToyDataset, writeToyModel } from './helpers-rl.js';
import { runWorkers, testRewards, trainConfig, type Job } from './helpers-distributed.js';

// The 1-rank runs share this process: one engine thread, as each rank has.
process.env['SPATIALTHINKER_THREADS'] = '1';
const distributed = (native().runtimeInfo() as { distributed?: { gloo: boolean; glooReason?: string } }).distributed;
if (!distributed?.gloo) {
  t.plan(0, `skipped: this build has no Gloo (${distributed?.glooReason ?? 'runtimeInfo().distributed.gloo is false'}): 2-rank CPU training needs it`);
} else {
  await tests();
}

async function tests(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'st-dp-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dataDir = join(root, 'data');
  const modelDir = join(root, 'model');
  const rows = await writeToyDataset(dataDir, 'train', 8, 1);
  await writeToyModel(modelDir, rows);
  const job = (kind: 'sft' | 'grpo', run: string, overrides: Record<string, unknown> = {}, extra: Partial<Job> = {}): Job => ({
    kind,
    dataDir,
    modelDir,
    runDir: join(root, run),
    overrides,
    ...extra,
  });
  const lr = 1e-3;
  const steps = 2;

  async function alone(j: Job): Promise<void> {
    const trainer = j.kind === 'sft' ? new SftTrainer(trainConfig(j)) : new GrpoTrainer(trainConfig(j), { rewards: testRewards() });
    try {
      await trainer.train();
    } finally {
      await trainer.dispose();
    }
  }

  async function twoRanks(t: Test, j: Job): Promise<void> {
    const results = await runWorkers(j, 2);
    for (const r of results) t.equal(r.code, 0, `rank ${r.rank} finished${r.stderr ? `: ${r.stderr.slice(-500)}` : ''}`);
  }

  const trainerDir = (run: string, step: number) => join(root, run, 'checkpoints', `step-${String(step).padStart(6, '0')}`, 'trainer');

  /** One optimiser-state tensor kind ("master", "adam_m", "adam_v") of a checkpoint as the flattened parameter list, whichever layout it has. */
  async function flat(dir: string, kind: string): Promise<Float32Array> {
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.safetensors'))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const parts: Float32Array[] = [];
    for (const file of files) {
      const { tensors } = await readSafetensors(join(dir, file));
      for (const [name, tensor] of Object.entries(tensors)) if (name === kind || name.startsWith(`${kind}.`)) parts.push(tensor.data as Float32Array);
    }
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  const metrics = (run: string) =>
    readFileSync(join(root, run, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);

  const firstDifference = (x: Float32Array, y: Float32Array) => (x.length !== y.length ? -2 : x.findIndex((v, i) => !Object.is(v, y[i])));

  /**
   * 2 ranks' weights (`two`, flattened) against 1 rank's (its unsharded checkpoint `oneDir`): the difference is
   * small beside the update the run made (from the source model), and no element moved further than AdamW can
   * move one in `steps` steps the other way.
   */
  async function withinTolerance(t: Test, two: Float32Array, oneDir: string, what: string): Promise<void> {
    const { tensors: master } = await readSafetensors(join(oneDir, 'optimizer.safetensors'));
    const { tensors: source } = await readSafetensors(join(modelDir, 'model.safetensors'));
    let at = 0;
    let difference = 0;
    let update = 0;
    let worst = 0;
    let beyondBulk = 0;
    const bulk = 1e-3 * lr * steps;
    for (const [name, tensor] of Object.entries(master)) {
      if (!name.startsWith('master.')) continue;
      const one = tensor.data as Float32Array;
      const start = source[name.slice('master.'.length)]?.data as Float32Array;
      for (let i = 0; i < one.length; i++, at++) {
        const d = Math.abs((two[at] as number) - (one[i] as number));
        difference += d * d;
        update += ((one[i] as number) - (start[i] as number)) ** 2;
        worst = Math.max(worst, d);
        if (d > bulk) beyondBulk++;
      }
    }
    t.equal(at, two.length, `${what}: as many values`);
    const relative = Math.sqrt(difference / update);
    t.ok(relative <= 1e-3, `${what}: |w2 - w1| / |w1 - w0| = ${relative.toExponential(2)} <= 1e-3 (${beyondBulk} of ${at} values differ by more than ${bulk.toExponential(0)})`);
    const adamBound = (2 * lr * steps * (1 - 0.9)) / Math.sqrt(1 - 0.999);
    t.ok(worst <= adamBound, `${what}: largest difference ${worst.toExponential(2)} <= ${adamBound.toExponential(2)}, AdamW's largest move over ${steps} steps, twice`);
  }

  t.test('SFT: 2 ranks reach the weights of 1 rank; ZeRO-1 equals the replicated optimiser bit for bit; resume into another world size is exact', async (t) => {
    await alone(job('sft', 'sft-1'));
    await twoRanks(t, job('sft', 'sft-2'));
    await twoRanks(t, job('sft', 'sft-2-replicated', { trainer: { zero1: false } }));

    const [one, two] = [metrics('sft-1'), metrics('sft-2')];
    t.equal(two.length, steps, 'rank 0 alone logged, once per step');
    // The same micro-batch losses, added in another grouping (each rank's
    // sum, then the all-reduce of the two): equal up to the last bits of a double.
    const lossGap = Math.abs(two[0]!['sft/loss']! - one[0]!['sft/loss']!) / Math.abs(one[0]!['sft/loss']!);
    t.ok(lossGap <= 1e-12, `the first loss agrees to 1e-12 relative (${lossGap.toExponential(2)}; ${two[0]!['sft/loss']} vs ${one[0]!['sft/loss']})`);
    for (let s = 0; s < steps; s++) {
      const rel = Math.abs(two[s]!['actor/grad_norm']! - one[s]!['actor/grad_norm']!) / one[s]!['actor/grad_norm']!;
      t.ok(rel < 1e-6, `step ${s + 1}: gradient norm within 1e-6 relative (${rel.toExponential(2)})`);
    }
    await withinTolerance(t, await flat(trainerDir('sft-2', steps), 'master'), trainerDir('sft-1', steps), '2 ranks against 1, fp32 weights');

    const state = JSON.parse(readFileSync(join(trainerDir('sft-2', steps), 'trainer_state.json'), 'utf8')) as { dataParallel: { worldSize: number; flatTotal: number; ranges: number[][] } };
    t.equal(state.dataParallel.worldSize, 2);
    t.same(state.dataParallel.ranges, [[0, Math.ceil(state.dataParallel.flatTotal / 2)], [Math.ceil(state.dataParallel.flatTotal / 2), state.dataParallel.flatTotal]], 'the split is in the trainer state');
    t.ok(existsSync(join(trainerDir('sft-2', steps), 'optimizer-rank1-of-2.safetensors')), 'each rank wrote its shard');
    t.ok(existsSync(join(trainerDir('sft-2-replicated', steps), 'optimizer.safetensors')), 'the replicated optimiser writes one file');
    for (const kind of ['master', 'adam_m', 'adam_v'])
      t.equal(firstDifference(await flat(trainerDir('sft-2', steps), kind), await flat(trainerDir('sft-2-replicated', steps), kind)), -1, `sharded ${kind} equals the unsharded one bit for bit`);

    // 1 rank resumes step 1 of either 2-rank run: the shards are re-split into one, and both runs go on identically.
    await alone(job('sft', 'resume-from-shards', { trainer: { load_checkpoint_path: join(root, 'sft-2', 'checkpoints', 'step-000001') } }));
    await alone(job('sft', 'resume-from-unsharded', { trainer: { load_checkpoint_path: join(root, 'sft-2-replicated', 'checkpoints', 'step-000001') } }));
    for (const kind of ['master', 'adam_m', 'adam_v'])
      t.equal(firstDifference(await flat(trainerDir('resume-from-shards', steps), kind), await flat(trainerDir('resume-from-unsharded', steps), kind)), -1, `1 rank resumed from 2 shards: ${kind} bit for bit as from the unsharded state`);

    // 2 ranks resume the 1-rank run's unsharded step 1: ZeRO-1 splits it, and goes on as the replicated optimiser does.
    const fromOne = { trainer: { load_checkpoint_path: join(root, 'sft-1', 'checkpoints', 'step-000001') } };
    await twoRanks(t, job('sft', 'split-from-one', fromOne));
    await twoRanks(t, job('sft', 'replicated-from-one', { trainer: { ...fromOne.trainer, zero1: false } }));
    for (const kind of ['master', 'adam_m', 'adam_v'])
      t.equal(firstDifference(await flat(trainerDir('split-from-one', steps), kind), await flat(trainerDir('replicated-from-one', steps), kind)), -1, `2 ranks resumed from 1 rank's unsharded state: ${kind} bit for bit, ZeRO-1 as replicated`);
  });

  t.test('a rank killed mid-run ends the job with an error naming it within the timeout; the resumed run equals an uninterrupted one', async (t) => {
    await twoRanks(t, job('sft', 'straight'));
    const killed = await runWorkers(job('sft', 'killed', {}, { dieAtStep: { rank: 1, step: 2 }, timeoutMs: 5000 }), 2, 60_000);
    t.equal(killed[1]!.code, 9, 'rank 1 died');
    t.not(killed[0]!.code, 0, 'rank 0 failed instead of hanging');
    t.ok(killed[0]!.seconds < 55, `rank 0 ended in ${killed[0]!.seconds.toFixed(1)} s`);
    t.match(killed[0]!.stderr, /rank 0: .*\S/, `rank 0 said why: ${killed[0]!.stderr.trim().split('\n').at(-1)}`);
    t.ok(existsSync(trainerDir('killed', 1)) && !existsSync(trainerDir('killed', 2)), 'the last complete checkpoint is step 1');

    await twoRanks(t, job('sft', 'killed'));
    for (const kind of ['master', 'adam_m', 'adam_v'])
      t.equal(firstDifference(await flat(trainerDir('killed', steps), kind), await flat(trainerDir('straight', steps), kind)), -1, `resumed ${kind} bit for bit`);
  });

  t.test('GRPO: 2 ranks sample the rollouts of 1 rank and reach its weights', async (t) => {
    const byLength = { worker: { reward: { reward_function: 'by-length' } } };
    await alone(job('grpo', 'grpo-1', byLength));
    await twoRanks(t, job('grpo', 'grpo-2', byLength));
    const [one, two] = [metrics('grpo-1'), metrics('grpo-2')];
    for (const key of ['reward/overall', 'response_length/mean', 'response_length/max', 'batch/groups_kept'])
      t.equal(two[0]![key], one[0]![key], `step 1 ${key}: the same rollouts`);
    t.ok(one[0]!['actor/grad_norm']! > 0, `step 1 has a gradient to reduce (norm ${one[0]!['actor/grad_norm']})`);
    const rel = Math.abs(two[0]!['actor/grad_norm']! - one[0]!['actor/grad_norm']!) / one[0]!['actor/grad_norm']!;
    t.ok(rel < 1e-6, `step 1 gradient norm within 1e-6 relative (${rel.toExponential(2)})`);
    await withinTolerance(t, await flat(trainerDir('grpo-2', steps), 'master'), trainerDir('grpo-1', steps), '2 ranks against 1, fp32 weights');
  });
}
