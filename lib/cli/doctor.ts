/** `spatialthinker doctor`: what the engine was built with and what it can use here. */
import { parseArgs } from './args.js';
import { createRequire } from 'node:module';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, type RuntimeInfo } from '../native/binding.js';
import { packageVersion } from './version.js';

export async function doctorCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write('usage: spatialthinker doctor [--json]\n\nThe package version, the engine build (CUDA architectures, CPU kernels, Gloo and NCCL), CPU threads and CUDA devices.\n');
    return;
  }
  const info = native().runtimeInfo();
  if (values.json) {
    process.stdout.write(JSON.stringify({ version: packageVersion(), ...info }, null, 2) + '\n');
    return;
  }
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  const lines = [
    `Package:      spatialthinker ${packageVersion()}, engine ${nativePath()}`,
    `CPU backend:  ${info.threads} threads (SPATIALTHINKER_THREADS overrides), ${ISA_NAMES[info.cpuIsa] ?? 'unknown (an engine built before runtimeInfo reported it)'} kernels (chosen at run time; SPATIALTHINKER_CPU_ISA caps them)`,
    `CUDA build:   ${info.cuda.compiled ? `yes, sm_${info.cuda.architectures.split(/[;,]/).join(', sm_')}, runtime ${version(info.cuda.runtimeVersion)}` : 'no'}`,
  ];
  if (info.cuda.compiled) lines.push(`CUDA driver:  ${info.cuda.driverVersion > 0 ? version(info.cuda.driverVersion) : 'none'}`);
  for (const d of info.cuda.devices)
    lines.push(`GPU ${d.index}:        ${d.name}, compute ${d.computeCapability}, ${gib(d.freeMemory)} free of ${gib(d.totalMemory)}`);
  const cublas = info.cuda.cublas;
  if (info.cuda.compiled)
    lines.push(`cuBLAS:       ${cublas.found ? `${cublas.library}${cublas.version ? `, version ${cublas.version}` : ''}` : `not found: ${cublas.error ?? 'unknown'}`}`);
  const dist = info.distributed;
  lines.push(
    `Distributed:  Gloo ${dist.gloo ? 'yes (CPU process groups, spatialthinker launch)' : `no: ${dist.glooReason ?? 'unknown'}`}; ` +
      `NCCL ${!dist.nccl.compiled ? 'no (a CUDA build has it)' : dist.nccl.found ? `${dist.nccl.library} (opened at run time; SPATIALTHINKER_NCCL overrides)` : `not found: ${dist.nccl.error ?? dist.nccl.library}`}`,
  );
  lines.push(`Device used:  ${engineDevice(info)}`);
  process.stdout.write(lines.join('\n') + '\n');
}

const ISA_NAMES: Record<RuntimeInfo['cpuIsa'], string> = { avx512: 'AVX-512', avx2: 'AVX2', portable: 'portable (no AVX2)' };

/** Which build of the engine is loaded: a prebuild, a local build, or SPATIALTHINKER_ADDON's. */
function nativePath(): string {
  if (process.env['SPATIALTHINKER_ADDON']) return `${process.env['SPATIALTHINKER_ADDON']} (SPATIALTHINKER_ADDON)`;
  const root = fileURLToPath(new URL('../../', import.meta.url));
  try {
    const file = (createRequire(import.meta.url)('node-gyp-build') as { resolve(dir: string): string }).resolve(root);
    return relative(root, file);
  } catch {
    return 'unknown';
  }
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
