#!/usr/bin/env node
/** The `spatialthinker` command line: one module per subcommand. */
import { scoreCommand } from './score.js';
import { doctorCommand } from './doctor.js';
import { checkFixturesCommand } from './check-fixtures.js';
import { generateCommand } from './generate.js';
import { dataCommand } from './data.js';
import { synthCommand } from './synth.js';
import { trainCommand, sftCommand } from './train.js';
import { demoCommand } from './demo.js';
import { evalCommand } from './eval.js';
import { reportCommand } from './report.js';
import { exportCommand } from './export.js';
import { planCommand } from './plan.js';
import { launchCommand } from './launch.js';
import { CliError, USAGE_EXIT_CODE } from './errors.js';
import { packageVersion } from './version.js';
import { didYouMean } from '../util/suggest.js';

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<void>; summary: string }> = {
  demo: { run: demoCommand, summary: 'the main job: shapes world, tiny model, SFT, then GRPO dense vs sparse, evaluated and reported (CPU, minutes)' },
  train: { run: trainCommand, summary: 'train a policy with GRPO and the dense spatial reward (EasyR1-style YAML config)' },
  sft: { run: sftCommand, summary: 'supervised warm start on gold reasoning traces (same config and engine)' },
  launch: { run: launchCommand, summary: 'start a distributed job: N workers of a command on this node with torchrun\'s RANK/WORLD_SIZE/MASTER_* variables' },
  report: { run: reportCommand, summary: 'an HTML page of a training run (or a demo directory of runs): curves per metric, samples with predicted vs ground-truth boxes' },
  score: { run: scoreCommand, summary: 'score completions in a JSONL file with a reward (spatial or sparse)' },
  doctor: { run: doctorCommand, summary: 'show the native engine build, CPU threads and CUDA devices' },
  synth: { run: synthCommand, summary: 'synthesise STVQA-style spatial questions from Visual Genome / VG150 scene graphs' },
  data: { run: dataCommand, summary: 'inspect and convert STVQA datasets (parquet, JSONL)' },
  eval: { run: evalCommand, summary: "evaluate a model (engine or OpenAI-compatible API) on the paper's spatial benchmarks from local files" },
  export: { run: exportCommand, summary: 'write a model or checkpoint directory as a clean Hugging Face model directory (bf16/fp32, sharded)' },
  plan: { run: planCommand, summary: 'the device memory plan of a training recipe on paper (config.json only, no weights): fits or not, item by item' },
  generate: { run: generateCommand, summary: 'answer a question about images with a model directory' },
  'check-fixtures': { run: checkFixturesCommand, summary: 'check the engine against a golden fixtures directory' },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(15)} ${c.summary}`);
  return (
    `usage: spatialthinker <command> [options]\n       spatialthinker --version\n\ncommands:\n${lines.join('\n')}\n\n` +
    `Run \`spatialthinker <command> --help\` for a command's options. Exit codes: 0 done, 1 failed, ` +
    `${USAGE_EXIT_CODE} usage error (unknown command, flag or configuration key, bad value), 130 interrupted.`
  );
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? USAGE_EXIT_CODE : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(packageVersion() + '\n');
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    const what = name.startsWith('-') ? 'option' : 'command';
    process.stderr.write(`spatialthinker: unknown ${what} "${name}"${didYouMean(name, [...Object.keys(COMMANDS), 'help', '--help', '--version', '-V'])} (spatialthinker --help lists the commands)\n`);
    return USAGE_EXIT_CODE;
  }
  try {
    await command.run(rest);
    return 0;
  } catch (error) {
    if (error instanceof CliError) {
      process.stderr.write(`spatialthinker ${name}: ${error.message}\n`);
      return error.exitCode;
    }
    // Library errors name the file or row at fault; a stack trace only buries that line.
    if (error instanceof Error && !process.env.SPATIALTHINKER_DEBUG) {
      process.stderr.write(`spatialthinker ${name}: ${error.message}\n(set SPATIALTHINKER_DEBUG=1 for the stack trace)\n`);
      return 1;
    }
    throw error;
  }
}

process.exitCode = await main(process.argv.slice(2));
