/** `spatialthinker train` (GRPO) and `spatialthinker sft`: the trainers from a YAML configuration and dotted overrides. */
import { parseArgs } from './args.js';
import { ConfigError, loadConfig, PRESETS, type TrainConfig } from '../rl/config.js';
import { GrpoTrainer } from '../rl/grpo-trainer.js';
import { SftTrainer } from '../rl/sft-trainer.js';
import { CliError, UsageError } from './errors.js';
import { attachConsole, SFT_LOG_EVERY } from './train-console.js';
import { modelDirectory } from './model-arg.js';
import { DistributedEnvError, readDistributedEnv } from '../distributed/env.js';
import { checkWorldMatchesConfig } from '../distributed/config-check.js';
import { initProcessGroup } from '../distributed/process-group.js';

const help = (command: 'train' | 'sft') => `usage: spatialthinker ${command} [--config FILE.yaml] [--preset NAME] [section.key=value ...]

${command === 'train' ? 'Trains a policy with GRPO (dense spatial reward by default)' : 'Fine-tunes a policy on target completions (gold reasoning traces by default)'}.
The configuration has EasyR1's sections (data, algorithm, worker.actor,
worker.rollout, worker.reward, trainer); dotted overrides come last, e.g.
  spatialthinker ${command} --config run.yaml ${command === 'train' ? 'trainer.max_steps=75 worker.rollout.n=8' : 'trainer.max_steps=300 worker.actor.optim.lr=1e-5'}
The effective configuration is written to the run directory
(trainer.save_checkpoint_path, default runs/<experiment_name>), with
metrics.jsonl, samples.jsonl, tensorboard/ and checkpoints/ (each step folder
a Hugging Face model directory, the optimiser state in its trainer/). A run
directory that already has a checkpoint resumes from its newest intact one (a
damaged one is set aside as damaged-step-N with a warning); a fresh run refuses
a directory that holds another run. Ctrl-C stops cleanly after saving a
checkpoint.

options:
  --config FILE   YAML configuration
  --preset NAME   start from a preset: ${Object.entries(PRESETS).map(([k, p]) => `${k} (${p.summary})`).join('; ')}
  --resume-from DIR  resume from this checkpoint (trainer.load_checkpoint_path)
  --print-config  print the effective configuration and exit
  --log-every N   a summary line every N steps (default ${command === 'sft' ? `${SFT_LOG_EVERY}, its loss the mean over them` : '1'});
                  metrics.jsonl and TensorBoard get every step
`;

export async function runTrainer(command: 'train' | 'sft', argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string' }, preset: { type: 'string' }, 'resume-from': { type: 'string' }, 'print-config': { type: 'boolean' }, 'log-every': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(help(command));
    return;
  }
  const logEvery = values['log-every'] === undefined ? undefined : Number(values['log-every']);
  if (logEvery !== undefined && !(Number.isInteger(logEvery) && logEvery >= 1)) throw new UsageError(`--log-every must be an integer >= 1, got "${values['log-every']}"`);
  let config: TrainConfig;
  try {
    config = await loadConfig({
      ...(values.config !== undefined ? { file: values.config } : {}),
      ...(values.preset !== undefined ? { preset: values.preset } : {}),
      overrides: values['resume-from'] !== undefined ? [...positionals, `trainer.load_checkpoint_path=${values['resume-from']}`] : positionals,
    });
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message);
    throw error;
  }
  if (values['print-config']) {
    const { configToYaml, configurationNotes } = await import('../rl/config.js');
    const notes = configurationNotes(config);
    // Comments, so the output stays a configuration file the trainer reads back.
    process.stdout.write(configToYaml(config) + (notes.length > 0 ? `# notes (the run logs these once):\n${notes.map((n) => `#   ${n}\n`).join('')}` : ''));
    return;
  }
  let world: ReturnType<typeof readDistributedEnv>;
  try {
    world = readDistributedEnv();
    checkWorldMatchesConfig(config.trainer, world, ['spatialthinker', command, ...argv].join(' '));
  } catch (error) {
    if (error instanceof DistributedEnvError) throw new UsageError(error.message);
    throw error;
  }
  // A Hub id runs from its snapshot in the local cache; config.yaml records which.
  config.worker.actor.model.model_path = modelDirectory(config.worker.actor.model.model_path, 'worker.actor.model.model_path');
  const controller = new AbortController();
  const onSignal = () => {
    process.stderr.write('\nstopping after saving a checkpoint (Ctrl-C again to quit at once)\n');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    controller.abort(new Error('interrupted'));
  };
  // SIGTERM too: it is what `spatialthinker launch` (and a scheduler) sends.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Launched as one of several ranks: train data-parallel over the group the launcher's environment names.
  const processGroup = world.worldSize > 1 ? await initProcessGroup({ device: config.trainer.device }, world) : undefined;
  const options = { signal: controller.signal, ...(processGroup ? { processGroup } : {}) };
  const trainer = command === 'train' ? new GrpoTrainer(config, options) : new SftTrainer(config, options);
  // Rank 0 speaks for the run; the other ranks' errors still reach stderr.
  const detach = (processGroup?.rank ?? 0) === 0 ? attachConsole(trainer, () => trainer.plannedSteps, logEvery !== undefined ? { logEvery } : {}) : () => undefined;
  try {
    const result = await trainer.train();
    process.stderr.write(`run directory: ${result.dir}\n${result.lastCheckpoint ? `last checkpoint: ${result.lastCheckpoint}\n` : ''}`);
  } catch (error) {
    throw new CliError(error instanceof Error ? error.message : String(error));
  } finally {
    detach();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await trainer.dispose();
  }
}

export const trainCommand = (argv: string[]) => runTrainer('train', argv);
export const sftCommand = (argv: string[]) => runTrainer('sft', argv);
