/** `spatialthinker doctor`: what the engine was built with and what it can use here. */
import { parseArgs } from 'node:util';
import { native } from '../native/binding.js';

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
  lines.push(`Device used:  ${info.cuda.available ? 'cuda (pass --device cuda)' : `cpu (${info.cuda.reason ?? 'no CUDA device'})`}`);
  process.stdout.write(lines.join('\n') + '\n');
}

function version(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}
