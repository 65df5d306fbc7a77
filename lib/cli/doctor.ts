/** `spatialthinker doctor`: what the engine was built with and what it can use here. */
import { parseArgs } from './args.js';
import { native, type RuntimeInfo } from '../native/binding.js';

export async function doctorCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write('usage: spatialthinker doctor [--json]\n');
    return;
  }
  const info = native().runtimeInfo();
  if (values.json) {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    return;
  }
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  const lines = [
    `CPU backend:  ${info.threads} threads (SPATIALTHINKER_THREADS overrides)`,
    `CUDA build:   ${info.cuda.compiled ? `yes, sm_${info.cuda.architectures.split(/[;,]/).join(', sm_')}, runtime ${version(info.cuda.runtimeVersion)}` : 'no'}`,
  ];
  if (info.cuda.compiled) lines.push(`CUDA driver:  ${info.cuda.driverVersion > 0 ? version(info.cuda.driverVersion) : 'none'}`);
  for (const d of info.cuda.devices)
    lines.push(`GPU ${d.index}:        ${d.name}, compute ${d.computeCapability}, ${gib(d.freeMemory)} free of ${gib(d.totalMemory)}`);
  const cublas = info.cuda.cublas;
  if (info.cuda.compiled)
    lines.push(`cuBLAS:       ${cublas.found ? `${cublas.library}${cublas.version ? `, version ${cublas.version}` : ''}` : `not found: ${cublas.error ?? 'unknown'}`}`);
  lines.push(`Device used:  ${engineDevice(info)}`);
  process.stdout.write(lines.join('\n') + '\n');
}

/** Which backend the engine runs on: the CPU unless --device cuda is given, and whether that would work here. */
export function engineDevice(info: RuntimeInfo): string {
  if (!info.cuda.available) return `cpu (cuda unavailable: ${info.cuda.reason ?? 'no CUDA device'})`;
  if (!info.cuda.cublas.found) return `cpu (cuda unavailable: cuBLAS not found, see above)`;
  return 'cpu by default; cuda with --device cuda (or trainer.device=cuda)';
}

function version(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}
