// Issue 19 defect 11: reward parsing stays linear on adversarial prompts and scenes.
import t from 'tap';
import { parseImageSize } from '../lib/rewards/image-size.js';
import { extractScene, mayOverflow } from '../lib/rewards/scene.js';
import { rng as random } from './helpers.js';

const REFERENCE_IMAGE_SIZE = /Image size: \(([\s\S]*?) x ([\s\S]*?)\)/;
const REFERENCE_MAY_OVERFLOW = /\d{309}|[eE]\+?0*[1-9]\d\d/;

t.test('parseImageSize agrees with the reference regex on random prompts', async (t) => {
  const next = random(19);
  const pieces = ['Image size: (', ' x ', ')', '640', '480', ' ', 'x', '(', '\n', '+7', 'a'];
  let agreed = 0;
  for (let n = 0; n < 20000; n++) {
    let prompt = '';
    const k = Math.floor(next() * 10);
    for (let i = 0; i < k; i++) prompt += pieces[Math.floor(next() * pieces.length)];
    const match = REFERENCE_IMAGE_SIZE.exec(prompt);
    const mine = parseImageSize(prompt);
    const strict = (s: string) => { const v = s.trim(); return /^\+?\d+$/.test(v) && Number(v) > 0 ? Number(v) : undefined; };
    const expected = match && strict(match[1] as string) !== undefined && strict(match[2] as string) !== undefined
      ? { width: strict(match[1] as string), height: strict(match[2] as string) } : undefined;
    if (JSON.stringify(mine) === JSON.stringify(expected)) agreed++;
    else t.fail(`disagrees on ${JSON.stringify(prompt)}`);
  }
  t.equal(agreed, 20000);
});

// A quadratic scan needs about 2e11 steps on this prompt (hours); a linear one, milliseconds.
t.test('parseImageSize on a prompt repeating "Image size: (" 200,000 times', { timeout: 120000 }, async (t) => {
  const prompt = 'Image size: ('.repeat(200000) + ' x 5';
  t.equal(parseImageSize(prompt), undefined);
  t.same(parseImageSize('Image size: ('.repeat(200000) + ' x 480)'), undefined, 'width field is not a number');
  t.same(parseImageSize('Q? Image size: (640 x 480) ' + 'Image size: ('.repeat(200000)), { width: 640, height: 480 });
});

t.test('the overflow pre-check agrees with the reference regex', async (t) => {
  const next = random(7);
  const pieces = ['e', 'E', '+', '0', '00', '1', '9', '12', '999', '-', ' ', '.', 'x'];
  for (let n = 0; n < 20000; n++) {
    let text = '';
    const k = Math.floor(next() * 12);
    for (let i = 0; i < k; i++) text += pieces[Math.floor(next() * pieces.length)];
    if (mayOverflow(text) !== REFERENCE_MAY_OVERFLOW.test(text)) t.fail(`disagrees on ${JSON.stringify(text)}`);
  }
  t.ok(mayOverflow('1'.repeat(309)));
  t.notOk(mayOverflow(('1'.repeat(308) + ',').repeat(3)));
  t.ok(mayOverflow('1e+000100'));
});

t.test('a 10 MB scene of 308-digit numbers parses (finite) and one of 309 digits does not', { timeout: 120000 }, async (t) => {
  const number = '9'.repeat(308);
  const count = Math.floor(10e6 / 309);
  const scene = `<scene>{"n": [${Array.from({ length: count }, () => number).join(',')}]}</scene>`;
  const parsed = extractScene(scene);
  t.equal((parsed['n'] as number[]).length, count);
  t.same(extractScene(`<scene>{"n": [${number}9]}</scene>`), {}, '1e308 * 10 overflows');
});
