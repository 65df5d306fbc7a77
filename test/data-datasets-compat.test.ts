/**
 * Parquet written here loads in Python's `datasets` (images decoded as PIL
 * images, features equal to those of the reference `generate_hf_data`), and
 * parquet written by `datasets`/pyarrow reads here. Needs a Python with
 * `datasets` and `pyarrow`: `python3` if it has them, or the interpreter named
 * by SPATIALTHINKER_PYTHON; skipped otherwise.
 */
import './helpers-parquet-resolve.js';
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { imagesOf, readRows, writeParquet, type StvqaRow } from '../lib/data/index.js';


const python = process.env['SPATIALTHINKER_PYTHON'] ?? 'python3';
const probe = spawnSync(python, ['-c', 'import datasets, pyarrow, PIL; print(datasets.__version__, pyarrow.__version__)'], { encoding: 'utf8' });
const available = probe.status === 0;
const skip = available ? false : `no Python with datasets and pyarrow (${python}; set SPATIALTHINKER_PYTHON)`;
const dir = mkdtempSync(join(tmpdir(), 'st-compat-'));

function py(script: string, ...args: string[]): unknown {
  const r = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8', env: { ...process.env, HF_DATASETS_CACHE: join(dir, 'cache'), HF_HUB_OFFLINE: '1' } });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

const GT = '<scene>{"objects": [{"id": "chair.1", "bbox": [10, 20, 30, 40]}], "relationships": []}</scene>\n<answer>(A) left of</answer>';

async function rows(n: number): Promise<StvqaRow[]> {
  const out: StvqaRow[] = [];
  for (let i = 0; i < n; i++) {
    const png = i % 2 === 1;
    const base = sharp({ create: { width: 60 + i, height: 40, channels: 3, background: { r: 10 * i, g: 100, b: 50 } } });
    const bytes = new Uint8Array(await (png ? base.png() : base.jpeg()).toBuffer());
    out.push({
      image_id: String(i),
      images: { bytes, path: png ? `img${i}.png` : null },
      problem: `<image> prompt\nImage size: (${60 + i} x 40)\nQ. where? ✓`,
      question_only: 'where?',
      answer: 'a',
      answer_only: 'A',
      answer_text: 't',
      answer_text_only: 'left of',
      answer_option_text: GT,
      answer_option_text_only: '(A) left of',
      category: 'relation',
      level: 'easy',
      question_with_options: 'where?\nOptions:\n(A) left of\n(B) right of',
      options: ['left of', 'right of'],
      rating: i === 2 ? null : i + 1,
    });
  }
  return out;
}

const LOAD = `
import sys, json, datasets
from datasets import load_dataset, Features, Value, Image, Sequence
datasets.disable_progress_bars()
expected = Features({'image_id': Value('string'), 'images': Image(), 'problem': Value('string'), 'question_only': Value('string'), 'answer': Value('string'), 'answer_only': Value('string'), 'answer_text': Value('string'), 'answer_text_only': Value('string'), 'answer_option_text': Value('string'), 'answer_option_text_only': Value('string'), 'category': Value('string'), 'level': Value('string'), 'question_with_options': Value('string'), 'options': Sequence(Value('string')), 'rating': Value('int32')})
ds = load_dataset('parquet', data_files=sys.argv[1], split='train')
out = {'n': len(ds), 'features_equal': ds.features == expected, 'rows': []}
for r in ds:
    im = r['images']
    out['rows'].append({'image': [type(im).__module__, im.size[0], im.size[1], im.format], 'rating': r['rating'], 'options': r['options'], 'problem': r['problem'], 'gt': r['answer_option_text']})
print(json.dumps(out))
`;

t.test('datasets loads what writeParquet writes', { skip }, async (t) => {
  const want = await rows(5);
  const file = join(dir, 'train-00000-of-00001.parquet');
  await writeParquet(file, want, { rowGroupSize: 2 });
  const got = py(LOAD, file) as { n: number; features_equal: boolean; rows: Array<Record<string, unknown>> };
  t.equal(got.n, 5);
  t.ok(got.features_equal, 'features equal those of generate_hf_data (Image, Sequence(Value(string)), Value(int32))');
  got.rows.forEach((r, i) => {
    t.match(r['image'], [/^PIL\./, 60 + i, 40, i % 2 ? 'PNG' : 'JPEG'], `row ${i} image decoded by PIL`);
    t.equal(r['rating'], i === 2 ? null : i + 1);
    t.same(r['options'], ['left of', 'right of']);
    t.equal(r['problem'], want[i]!.problem);
    t.equal(r['gt'], GT);
  });
});

t.test('readRows reads what datasets writes', { skip }, async (t) => {
  const file = join(dir, 'from-datasets.parquet');
  const made = py(
    `
import io, sys, json, datasets
from datasets import Dataset, Features, Value, Image, Sequence
from PIL import Image as P
datasets.disable_progress_bars()
def img(i):
    b = io.BytesIO(); P.new('RGB', (30 + i, 20), (i, 2, 3)).save(b, format='PNG'); return b.getvalue()
f = Features({'image_id': Value('string'), 'images': Image(), 'problem': Value('string'), 'answer_option_text': Value('string'), 'category': Value('string'), 'options': Sequence(Value('string')), 'rating': Value('int32')})
n = 150
ds = Dataset.from_dict({'image_id': [str(i) for i in range(n)], 'images': [{'bytes': img(i), 'path': None} for i in range(n)],
  'problem': [f'Image size: ({30 + i} x 20)' for i in range(n)], 'answer_option_text': [${JSON.stringify(GT)}] * n,
  'category': ['depth'] * n, 'options': [['a', 'b']] * n, 'rating': list(range(n))}, features=f)
ds.to_parquet(sys.argv[1])
print(json.dumps({'n': n}))
`,
    file,
  ) as { n: number };
  let n = 0;
  for await (const { row, index } of readRows(file, { validateImages: true })) {
    t.equal(index, n);
    if (index % 49 === 0) {
      const meta = await sharp(imagesOf(row)[0]!.bytes).metadata();
      t.same([meta.width, meta.height, meta.format], [30 + index, 20, 'png'], `row ${index} image`);
      t.same([row.image_id, row.rating, row.options, row.category], [String(index), index, ['a', 'b'], 'depth']);
    }
    n++;
  }
  t.equal(n, made.n);
});
