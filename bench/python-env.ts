/**
 * A Python for the benchmarks' reference columns: $SPATIALTHINKER_PYTHON when
 * set, else python3 when it already has the modules, else a venv the bench
 * makes under .scratch/ and fills with pip from the machine's package index.
 * When none can be had, the reason, so the column is skipped saying why.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export type PythonEnv = { python: string } | { skipped: string };

function has(python: string, modules: readonly string[]): boolean {
  const probe = spawnSync(python, ['-c', modules.map((m) => `import ${m}`).join('; ')], { encoding: 'utf8', timeout: 120_000 });
  return probe.status === 0;
}

/** `packages` are pip names; `modules` the imports that prove them installed. */
export function pythonWith(modules: readonly string[], packages: readonly string[], venvName = 'bench-venv'): PythonEnv {
  const chosen = process.env['SPATIALTHINKER_PYTHON'];
  if (chosen) return has(chosen, modules) ? { python: chosen } : { skipped: `SPATIALTHINKER_PYTHON (${chosen}) cannot import ${modules.join(', ')}` };
  if (has('python3', modules)) return { python: 'python3' };
  const venv = resolve('.scratch', venvName);
  const python = join(venv, 'bin', 'python');
  if (existsSync(python) && has(python, modules)) return { python };
  console.log(`(making ${venv} with ${packages.join(', ')}: minutes the first time)`);
  const made = spawnSync('python3', ['-m', 'venv', venv], { encoding: 'utf8' });
  if (made.status !== 0) return { skipped: `python3 -m venv failed: ${(made.stderr ?? '').trim().split('\n').at(-1) ?? ''}` };
  const pip = spawnSync(join(venv, 'bin', 'pip'), ['install', '-q', ...packages], { encoding: 'utf8', timeout: 1_800_000 });
  if (pip.status !== 0 || !has(python, modules))
    return { skipped: `pip install ${packages.join(' ')} failed: ${(pip.stderr ?? '').trim().split('\n').at(-1) ?? ''}` };
  return { python };
}
