/**
 * One rank of a data-parallel test run (started by test/helpers-distributed.ts): joins
 * the process group named by the launcher's environment and trains.
 */
import { initProcessGroup } from '../lib/distributed/process-group.js';
import { GrpoTrainer } from '../lib/rl/grpo-trainer.js';
import { SftTrainer } from '../lib/rl/sft-trainer.js';
import { testRewards, trainConfig, type Job } from './helpers-distributed.js';

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const rank = Number(process.env['RANK']);
const group = await initProcessGroup({ device: 'cpu', timeoutMs: job.timeoutMs ?? 60_000 });
const config = trainConfig(job);
const trainer = job.kind === 'sft' ? new SftTrainer(config, { processGroup: group }) : new GrpoTrainer(config, { processGroup: group, rewards: testRewards() });
if (job.dieAtStep?.rank === rank)
  trainer.on('progress', (e) => {
    if (e.step === job.dieAtStep?.step) process.exit(9);
  });
try {
  await trainer.train();
} catch (error) {
  process.stderr.write(`rank ${rank}: ${(error as Error).message}\n`);
  process.exit(1);
} finally {
  await trainer.dispose();
}
process.exit(0);
