import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const SUBPATHS = ['engine', 'train', 'rewards', 'data', 'eval', 'synth'] as const;

/** Newest modification time of the TypeScript sources under lib/. */
function newestSource(dir = 'lib'): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : entry.name.endsWith('.ts') ? statSync(path).mtimeMs : 0);
  }
  return newest;
}

// The package imports itself by name once dist/ is built (what `npm install` and prepare do); build it when stale.
const entries = ['dist/index.js', ...SUBPATHS.map((s) => `dist/${s}/index.js`)];
if (entries.some((e) => !existsSync(e) || statSync(e).mtimeMs < newestSource())) {
  const built = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed:\n${built.stdout}${built.stderr}`);
}

t.test('each subpath imports by the package name, with its API', async (t) => {
  const expected: Record<(typeof SUBPATHS)[number], string[]> = {
    engine: ['Model', 'VisionLanguageModel', 'Tokenizer', 'readModelConfig'],
    train: ['GrpoTrainer', 'SftTrainer', 'loadConfig', 'saveCheckpoint', 'restoreCheckpoint', 'buildRunReport', 'configJsonSchema'],
    rewards: ['SpatialReward', 'SparseReward', 'rewards', 'RewardRegistry'],
    data: ['readRows', 'writeParquet', 'writeJsonl', 'validateRow'],
    eval: ['runEvaluation', 'BENCHMARKS', 'EngineGenerator'],
    synth: ['synthesizeDataset', 'generateQuestions', 'readVisualGenome'],
  };
  for (const sub of SUBPATHS) {
    const module = (await import(`spatialthinker/${sub}`)) as Record<string, unknown>;
    for (const name of expected[sub]) t.ok(module[name] !== undefined, `spatialthinker/${sub} exports ${name}`);
  }
});

t.test('the root holds the user-facing API and not the internals', async (t) => {
  const root = (await import('spatialthinker')) as Record<string, unknown>;
  for (const name of ['Model', 'VisionLanguageModel', 'GrpoTrainer', 'SftTrainer', 'loadConfig', 'SpatialReward', 'readRows', 'writeParquet', 'runEvaluation', 'synthesizeDataset', 'saveCheckpoint', 'writeRunReport'])
    t.ok(root[name] !== undefined, `root exports ${name}`);
  for (const name of ['mulberry32', 'crc32c', 'maskedCrc32c', 'pyJsonDumps', 'hash32', 'shuffled', 'f32ToBf16Bits', 'checkFixtures', 'ciouMatrices', 'shapes', 'sha256Hex', 'redactSecret'])
    t.equal(root[name], undefined, `${name} is not on the root`);
  t.ok(Object.keys(root).length < 250, `a curated root (${Object.keys(root).length} names)`);
});
