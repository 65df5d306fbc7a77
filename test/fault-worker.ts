/**
 * The child side of test/fault-suite.test.ts: loads corrupted inputs through
 * the real entry points, one JSON line per case, so that a native crash (the
 * process dying) is seen by the parent as the case it was on. Not a test file.
 *
 *   fault-worker.ts corpus KIND DIR     DIR holds case-N/ folders or files
 *   fault-worker.ts save MODEL RUN      saves checkpoints in a loop until killed
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readRows } from '../lib/data/reader.js';
import { readModelConfig } from '../lib/engine/config.js';
import { Model } from '../lib/engine/model.js';
import { saveCheckpoint } from '../lib/rl/checkpoint.js';
import { Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { loadImage } from '../lib/vision/image.js';

type Loader = (path: string) => Promise<unknown>;

const LOADERS: Record<string, Loader> = {
  safetensors: async (dir) => {
    const model = await Model.load(dir);
    await model.dispose();
  },
  config: (dir) => readModelConfig(dir),
  tokenizer: (dir) => Tokenizer.fromDirectory(dir),
  image: (file) => loadImage(file),
  parquet: async (file) => {
    // A damaged page header can make decoding spin: the worker's time limit ends it.
    for await (const _ of readRows(file, { decodeLimits: { timeoutMs: 5000 } })) void _;
  },
};

async function corpus(kind: string, dir: string): Promise<void> {
  const load = LOADERS[kind];
  if (!load) throw new Error(`unknown corpus kind ${kind}`);
  const cases = readdirSync(dir).filter((n) => n.startsWith('case-')).sort();
  for (const name of cases) {
    const path = join(dir, name);
    const file = statSync(path).isDirectory() ? join(path, kindFile(kind)) : path;
    process.stdout.write(JSON.stringify({ case: name, started: true }) + '\n');
    let error: string | undefined;
    try {
      await load(path);
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    process.stdout.write(JSON.stringify({ case: name, file, ...(error === undefined ? { loaded: true } : { error }) }) + '\n');
  }
}

function kindFile(kind: string): string {
  return { safetensors: 'model.safetensors', config: 'config.json', tokenizer: 'tokenizer.json' }[kind] ?? '';
}

async function saveLoop(modelDir: string, runDir: string): Promise<void> {
  const model = await Model.load(modelDir);
  for (let step = 1; ; step++) {
    await saveCheckpoint(model, modelDir, runDir, step, { note: 'fault suite' }, { dtype: 'fp32', keepLast: 2 });
    process.stdout.write(`saved ${step}\n`);
  }
}

const [mode, a, b] = process.argv.slice(2);
if (mode === 'corpus') await corpus(a as string, b as string);
else if (mode === 'save') await saveLoop(a as string, b as string);
else throw new Error(`usage: fault-worker.ts corpus KIND DIR | save MODEL RUN`);
