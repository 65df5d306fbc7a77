/**
 * `spatialthinker report RUN_DIR`: a self-contained HTML page of a training
 * run (or of a demo directory of runs): curves per metric and sampled
 * completions with predicted vs ground-truth boxes.
 */
import { parseArgs } from './args.js';
import { ReportError } from '../report/run-data.js';
import { writeRunReport } from '../report/run-report.js';
import { CliError, UsageError } from './errors.js';
import { Progress } from './progress.js';

const HELP = `usage: spatialthinker report RUN_DIR [options]

Writes one self-contained HTML page (charts as inline SVG, images embedded)
for a training run directory (metrics.jsonl, samples.jsonl, config.yaml,
checkpoints/, tensorboard/), or for a directory whose subdirectories are runs
(their curves overlaid, one colour per run; summary.json's "table" shown at
the top).

options:
  --out FILE           where to write the page (default RUN_DIR/report.html)
  --max-samples N      sampled completions shown per run and split (default 8; 0 for none)
  --sample-steps N     steps those samples come from: the last, the first and
                       evenly spaced ones between (default 3)
  -h, --help           show this help

Malformed lines of metrics.jsonl / samples.jsonl are listed on the page and
here (file:line), not fatal; a missing image shows as a placeholder.
`;

function count(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min) throw new UsageError(`${name} must be an integer >= ${min} (got "${value}")`);
  return n;
}

export async function reportCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      'max-samples': { type: 'string' },
      'sample-steps': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one RUN_DIR (got ${positionals.length}) (--help shows the usage)`);
  const dir = positionals[0]!;
  const maxSamples = count(values['max-samples'], '--max-samples', 8, 0);
  const sampleSteps = count(values['sample-steps'], '--sample-steps', 3, 1);
  const progress = new Progress('rendered', 'samples');
  let report;
  try {
    report = await writeRunReport(dir, values.out, { maxSamples, sampleSteps, onProgress: (n) => progress.update(n) });
  } catch (error) {
    if (error instanceof ReportError) throw new CliError(error.message);
    throw error;
  }
  progress.done(report.samples);
  for (const problem of report.problems.slice(0, 10)) process.stderr.write(`warning: ${problem}\n`);
  if (report.problemCount > 10) process.stderr.write(`warning: ... and ${report.problemCount - 10} more problems (listed on the page)\n`);
  process.stderr.write(
    `${report.runs.length} run${report.runs.length === 1 ? '' : 's'} (${report.runs.join(', ')}), ${report.charts} charts, ${report.constants} constant metric${report.constants === 1 ? '' : 's'}, ${report.samples} samples\n`,
  );
  process.stdout.write(`${report.path}\n`);
}
