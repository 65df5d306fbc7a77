/** `spatialthinker check-fixtures DIR`: every golden case against the engine. */
import { parseArgs } from './args.js';
import { checkFixtures, type CaseResult } from '../fixtures/check.js';
import { native } from '../native/binding.js';
import { CliError, UsageError } from './errors.js';

const HELP = `usage: spatialthinker check-fixtures DIR [--only NAME,...] [--device cpu|cuda] [--dtype fp32|bf16] [--json]

Runs every case of a fixtures directory (manifest.json + cases/, as in
shared/fixtures/qwen25vl-tiny) through the engine and prints, per case and
quantity, the largest absolute and relative error and whether the manifest's
tolerance holds. Exits 1 if any quantity fails or any case errors.

  --device NAME   the engine backend: cpu (default) or cuda
  --dtype NAME    the CUDA backend's storage: fp32 (default here: the manifest's
                  tolerances are fp32 agreements with PyTorch) or bf16 (expect
                  the fp32 tolerances to fail; test/cuda-model.test.ts holds bf16
                  to tolerances of its own)
`;

export async function checkFixturesCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { only: { type: 'string' }, device: { type: 'string', default: 'cpu' }, dtype: { type: 'string', default: 'fp32' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const dir = positionals[0];
  if (!dir) throw new UsageError(`a fixtures directory is required (--help shows the usage)`);
  const device = values.device;
  if (device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device must be cpu or cuda, not "${device}"`);
  const dtype = values.dtype;
  if (dtype !== 'fp32' && dtype !== 'bf16') throw new UsageError(`--dtype must be fp32 or bf16, not "${dtype}"`);
  if (dtype === 'bf16' && device !== 'cuda') throw new UsageError('--dtype bf16 needs --device cuda (the CPU backend is fp32 only)');
  if (device === 'cuda') {
    const cuda = native().runtimeInfo().cuda;
    if (!cuda.available) throw new CliError(`--device cuda: ${cuda.reason ?? 'no usable CUDA device'}`);
  }
  const results = await checkFixtures(dir, {
    ...(values.only ? { only: values.only.split(',') } : {}),
    device,
    dtype,
    onCase: values.json ? undefined : printCase,
  });
  if (values.json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  const failed = results.filter((r) => r.error || r.quantities.some((q) => !q.pass));
  const skipped = results.filter((r) => r.skipped);
  const passed = results.length - failed.length - skipped.length;
  process.stdout.write(`\n${passed} passed, ${failed.length} failed, ${skipped.length} skipped\n`);
  if (failed.length > 0) throw new CliError(`${failed.length} case(s) failed: ${failed.map((f) => f.name).join(', ')}`);
}

function printCase(r: CaseResult): void {
  if (r.skipped) {
    process.stdout.write(`SKIP ${r.name} (${r.kind}): ${r.skipped}\n`);
    return;
  }
  if (r.error) {
    process.stdout.write(`FAIL ${r.name} (${r.kind}): ${r.error}\n`);
    return;
  }
  const ok = r.quantities.every((q) => q.pass);
  process.stdout.write(`${ok ? 'PASS' : 'FAIL'} ${r.name} (${r.kind}, ${r.seconds.toFixed(2)} s)\n`);
  for (const q of r.quantities)
    process.stdout.write(
      `  ${q.pass ? 'ok  ' : 'FAIL'} ${q.name.padEnd(20)} max abs ${q.maxAbs.toExponential(2)}  max rel ${q.maxRel.toExponential(2)}  (${q.detail})\n`,
    );
}
