/**
 * Benchmark fixtures for the evaluation tests: small parquet files in the
 * layout `datasets` writes to the hub (nullable columns, Image = struct
 * {bytes, path}, lists as 3-level LIST with `item` elements, the
 * `huggingface` features metadata), and images generated with sharp.
 * Import './helpers-parquet-resolve.js' before this module.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { SchemaElement } from 'hyparquet';
import sharp from 'sharp';

export type ColumnType = 'string' | 'int32' | 'int64' | 'image' | 'list<string>';

export interface Column {
  name: string;
  type: ColumnType;
}

const STRING = { type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } } as const;

function schemaOf(column: Column): SchemaElement[] {
  const { name, type } = column;
  switch (type) {
    case 'string':
      return [{ name, repetition_type: 'OPTIONAL', ...STRING }];
    case 'int32':
      return [{ name, repetition_type: 'OPTIONAL', type: 'INT32' }];
    case 'int64':
      return [{ name, repetition_type: 'OPTIONAL', type: 'INT64' }];
    case 'image':
      return [
        { name, repetition_type: 'OPTIONAL', num_children: 2 },
        { name: 'bytes', repetition_type: 'OPTIONAL', type: 'BYTE_ARRAY' },
        { name: 'path', repetition_type: 'OPTIONAL', ...STRING },
      ];
    case 'list<string>':
      return [
        { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'item', repetition_type: 'OPTIONAL', ...STRING },
      ];
  }
}

function featureOf(type: ColumnType): unknown {
  const value = (dtype: string) => ({ dtype, _type: 'Value' });
  switch (type) {
    case 'string':
      return value('string');
    case 'int32':
      return value('int32');
    case 'int64':
      return value('int64');
    case 'image':
      return { _type: 'Image' };
    case 'list<string>':
      return { feature: value('string'), _type: 'Sequence' };
  }
}

/** Writes `rows` as one parquet file with the given columns (missing values are null), one row group per `rowGroupSize` rows. */
export async function writeHubParquet(path: string, columns: readonly Column[], rows: readonly Record<string, unknown>[], rowGroupSize = 2): Promise<void> {
  const { ParquetWriter, fileWriter } = await import('hyparquet-writer');
  mkdirSync(dirname(path), { recursive: true });
  const schema: SchemaElement[] = [{ name: 'schema', num_children: columns.length }, ...columns.flatMap(schemaOf)];
  const features = Object.fromEntries(columns.map((c) => [c.name, featureOf(c.type)]));
  const writer = new ParquetWriter({
    writer: fileWriter(path),
    schema,
    kvMetadata: [{ key: 'huggingface', value: JSON.stringify({ info: { features } }) }],
  });
  for (let start = 0; start < rows.length; start += rowGroupSize) {
    const group = rows.slice(start, start + rowGroupSize);
    writer.write({
      columnData: columns.map((c) => ({
        name: c.name,
        data: group.map((r) => {
          const v = r[c.name];
          if (v === undefined || v === null) return null;
          if (c.type === 'int64') return BigInt(v as number);
          return v;
        }),
      })),
      rowGroupSize: group.length,
    });
  }
  writer.finish();
}

/** A PNG of one colour; distinct sizes make the `(w x h)` prompt line checkable. */
export async function png(width: number, height: number, rgb: [number, number, number] = [90, 140, 200]): Promise<Uint8Array> {
  const buffer = await sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();
  return new Uint8Array(buffer);
}

/** An Image struct value as `datasets` stores it. */
export async function imageValue(width: number, height: number, name: string, rgb?: [number, number, number]): Promise<{ bytes: Uint8Array; path: string }> {
  return { bytes: await png(width, height, rgb), path: name };
}

// ---------------------------------------------------------------------------
// One small fixture per benchmark, in the column layout of its hub files.

/** A fixture question, the reply a scripted model gives to it, and the verdict in each matching mode. */
export interface FixtureRow {
  /** A phrase that occurs in this question's prompt only. */
  key: string;
  reply: string;
  corrected: boolean;
  reference: boolean;
  task?: string;
}

export interface BenchmarkFixture {
  name: string;
  rows: FixtureRow[];
}

const lettered = (choices: readonly string[]) => choices.map((c, i) => `(${String.fromCharCode(65 + i)}) ${c}`).join('\n');

/**
 * Writes every benchmark's fixture under `dataDir/<folder>/...` (the layout
 * `huggingface-cli download` gives) and returns what each row's scripted
 * reply should score. Images are 56-84 px, so the tiny model's prompts stay
 * short.
 */
export async function writeBenchmarkFixtures(dataDir: string): Promise<BenchmarkFixture[]> {
  const fixtures: BenchmarkFixture[] = [];
  const img = (w: number, h: number, name: string) => imageValue(w, h, name);

  // CV-Bench: dataset card field table (bbox, whose type the card does not give, is left out).
  const cvColumns: Column[] = [
    { name: 'idx', type: 'int64' },
    { name: 'type', type: 'string' },
    { name: 'task', type: 'string' },
    { name: 'image', type: 'image' },
    { name: 'question', type: 'string' },
    { name: 'choices', type: 'list<string>' },
    { name: 'answer', type: 'string' },
    { name: 'prompt', type: 'string' },
    { name: 'filename', type: 'string' },
    { name: 'source', type: 'string' },
    { name: 'source_dataset', type: 'string' },
    { name: 'source_filename', type: 'string' },
    { name: 'target_class', type: 'string' },
    { name: 'target_size', type: 'int64' },
  ];
  const cv = async (idx: number, type: string, task: string, question: string, choices: string[], answer: string) => ({
    idx,
    type,
    task,
    image: await img(84, 56, `img/${type}/${task.toLowerCase()}/${idx}.png`),
    question,
    choices,
    answer,
    prompt: `${question} Select from the following choices.\n${lettered(choices)}`,
    filename: `img/${type}/${task.toLowerCase()}/${idx}.png`,
    source: type === '2D' ? 'COCO' : 'Omni3D',
    source_dataset: type === '2D' ? 'COCO 2017 Validation Set' : 'SUNRGBD',
    source_filename: `${idx}.jpg`,
    target_class: type === '2D' ? 'chair' : null,
    target_size: type === '2D' ? 1200 + idx : null,
  });
  await writeHubParquet(join(dataDir, 'CV-Bench/test_2d.parquet'), cvColumns, [
    await cv(0, '2D', 'Count', 'How many chairs are in the image?', ['3', '2', '1', '0'], '(B)'),
    await cv(1, '2D', 'Relation', 'Where is the lamp located with respect to the sofa?', ['left', 'right'], '(A)'),
    await cv(2, '2D', 'Count', 'How many cups are in the image?', ['1', '4', '2', '5'], '(C)'),
  ]);
  fixtures.push({
    name: 'cv-bench-2d',
    rows: [
      { key: 'How many chairs', reply: '<think>two</think><answer>(B) 2</answer>', corrected: true, reference: true, task: 'Count' },
      // A bare letter: right under corrected matching only when it is the answer; the reference maps it to A.
      { key: 'with respect to the sofa', reply: '<answer>B</answer>', corrected: false, reference: true, task: 'Relation' },
      { key: 'How many cups', reply: '<answer>C</answer>', corrected: true, reference: false, task: 'Count' },
    ],
  });
  await writeHubParquet(join(dataDir, 'CV-Bench/test_3d.parquet'), cvColumns, [
    await cv(1438, '3D', 'Depth', 'Which is closer to the camera, the lamp or the table?', ['lamp', 'table'], '(A)'),
    await cv(1439, '3D', 'Distance', 'Which is closer to the bed, the chair or the door?', ['chair', 'door'], '(B)'),
  ]);
  fixtures.push({
    name: 'cv-bench-3d',
    rows: [
      { key: 'the lamp or the table', reply: 'I compared them. Answer: (A) lamp', corrected: true, reference: true, task: 'Depth' },
      // A trailing period: the option text no longer matches exactly, so the reference scores A.
      { key: 'the chair or the door', reply: '<answer>(B) door.</answer>', corrected: true, reference: false, task: 'Distance' },
    ],
  });

  // BLINK: idx, question, sub_task, image_1..image_4, choices, answer, prompt, explanation.
  const blinkColumns: Column[] = [
    { name: 'idx', type: 'string' },
    { name: 'question', type: 'string' },
    { name: 'sub_task', type: 'string' },
    { name: 'image_1', type: 'image' },
    { name: 'image_2', type: 'image' },
    { name: 'image_3', type: 'image' },
    { name: 'image_4', type: 'image' },
    { name: 'choices', type: 'list<string>' },
    { name: 'answer', type: 'string' },
    { name: 'prompt', type: 'string' },
    { name: 'explanation', type: 'string' },
  ];
  const blink = async (config: string, i: number, question: string, choices: string[], answer: string, images = 1) => ({
    idx: `val_${config}_${i}`,
    question,
    sub_task: config.replace(/_/g, ' '),
    image_1: await img(56, 56, `${config}_${i}_1.png`),
    image_2: images > 1 ? await img(70, 56, `${config}_${i}_2.png`) : null,
    image_3: null,
    image_4: null,
    choices,
    answer,
    prompt: `${question}\nSelect from the following choices.\n${lettered(choices)}`,
    explanation: '',
  });
  await writeHubParquet(join(dataDir, 'BLINK/Spatial_Relation/val-00000-of-00001.parquet'), blinkColumns, [
    await blink('Spatial_Relation', 1, 'Is the car beside the tree?', ['yes', 'no'], '(A)'),
    await blink('Spatial_Relation', 2, 'Is the cat under the table?', ['yes', 'no'], '(B)'),
  ]);
  fixtures.push({
    name: 'blink-spatial',
    rows: [
      { key: 'Is the car beside', reply: '<answer>(A) yes</answer>', corrected: true, reference: true },
      // No answer tags: the whole reply is the answer, which names no option.
      { key: 'Is the cat under', reply: 'I think the answer is no', corrected: false, reference: false },
    ],
  });
  await writeHubParquet(join(dataDir, 'BLINK/Relative_Depth/val-00000-of-00001.parquet'), blinkColumns, [
    await blink('Relative_Depth', 1, 'Which point is closer to the camera, A or B?', ['A', 'B'], '(A)'),
    await blink('Relative_Depth', 2, 'Which marked point is nearer to the camera?', ['A', 'B'], '(B)'),
  ]);
  fixtures.push({
    name: 'blink-depth',
    rows: [
      // "(B)" leaves nothing after the label: the reference falls back to A, which is right here by accident.
      { key: 'Which point is closer', reply: '<answer>(B)</answer>', corrected: false, reference: true },
      { key: 'Which marked point', reply: '<answer>B</answer>', corrected: true, reference: true },
    ],
  });
  await writeHubParquet(join(dataDir, 'BLINK/Counting/val-00000-of-00001.parquet'), blinkColumns, [
    await blink('Counting', 1, 'How many blue floats are there?', ['0', '3', '2', '1'], '(B)'),
  ]);
  fixtures.push({ name: 'blink-counting', rows: [{ key: 'blue floats', reply: '<answer>3</answer>', corrected: true, reference: true }] });
  await writeHubParquet(join(dataDir, 'BLINK/Object_Localization/val-00000-of-00001.parquet'), blinkColumns, [
    await blink('Object_Localization', 1, 'Which bounding box more accurately localizes and encloses the car?', ['Box A', 'Box B'], '(A)'),
  ]);
  fixtures.push({ name: 'blink-object', rows: [{ key: 'encloses the car', reply: '<answer>(B) Box B</answer>', corrected: false, reference: false }] });
  await writeHubParquet(join(dataDir, 'BLINK/Multi-view_Reasoning/val-00000-of-00001.parquet'), blinkColumns, [
    await blink('Multi-view_Reasoning', 1, 'The images are frames from a video. Is the camera moving left or right?', ['left', 'right'], '(B)', 2),
  ]);
  fixtures.push({ name: 'blink-multi-view', rows: [{ key: 'Is the camera moving', reply: '<answer>(B) right</answer>', corrected: true, reference: true }] });

  // 3DSRBench (hunarbatra/3DSRBench): the reference loader's columns.
  const sr = async (task: string, question: string, choices: string[], answer: string) => ({
    image: await img(84, 56, `${task}.jpg`),
    prompt: `${question}\n${lettered(choices)}`,
    answer,
    choices,
    task,
  });
  await writeHubParquet(
    join(dataDir, '3DSRBench/data/test-00000-of-00001.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'prompt', type: 'string' },
      { name: 'answer', type: 'string' },
      { name: 'choices', type: 'list<string>' },
      { name: 'task', type: 'string' },
    ],
    [
      await sr('height', 'Which object is higher in 3D, the lamp or the cup?', ['lamp', 'cup'], '(A)'),
      await sr('location', 'Is the bottle closer to the camera than the plate?', ['yes', 'no'], '(B)'),
      await sr('orientation', 'Is the man facing the dog?', ['yes', 'no'], '(A)'),
      await sr('multi_object', 'Which object is farther from the chair, the sofa or the table?', ['sofa', 'table', 'same distance'], '(C)'),
    ],
  );
  fixtures.push({
    name: '3dsrbench',
    rows: [
      { key: 'higher in 3D', reply: '<answer>(A) lamp</answer>', corrected: true, reference: true, task: 'height' },
      { key: 'bottle closer', reply: '<answer>(A) yes</answer>', corrected: false, reference: false, task: 'location' },
      { key: 'man facing', reply: '<answer>A.</answer>', corrected: true, reference: true, task: 'orientation' },
      { key: 'farther from the chair', reply: '<answer>{same distance}</answer>', corrected: true, reference: true, task: 'multi_object' },
    ],
  });

  // MMVP (hunarbatra/MMVP): image, text, label.
  await writeHubParquet(
    join(dataDir, 'MMVP/data/train-00000-of-00001.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'text', type: 'string' },
      { name: 'label', type: 'string' },
    ],
    [
      { image: await img(56, 84, 'mmvp1.jpg'), text: "Is the dog facing left or right from the camera's perspective? (a) Left (b) Right", label: 'a' },
      { image: await img(56, 84, 'mmvp2.jpg'), text: 'Is the door of the truck cab open? (a) Yes (b) No', label: 'b' },
    ],
  );
  fixtures.push({
    name: 'mmvp',
    rows: [
      { key: 'Is the dog facing', reply: '<answer>(a) Left</answer>', corrected: true, reference: true },
      { key: 'truck cab', reply: '<answer>(a) Yes</answer>', corrected: false, reference: false },
    ],
  });

  // SpatialBench (hunarbatra/SpatialBench): dataset card features.
  await writeHubParquet(
    join(dataDir, 'SpatialBench/data/train-00000-of-00001.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'answer', type: 'string' },
      { name: 'category', type: 'string' },
      { name: 'text', type: 'string' },
      { name: 'question_id', type: 'int32' },
    ],
    [
      { image: await img(56, 56, 'sb1.png'), answer: 'yes', category: 'existence', text: 'Is there a cup on the table?', question_id: 1 },
      { image: await img(56, 56, 'sb2.png'), answer: '3', category: 'counting', text: 'How many apples are in the bowl', question_id: 2 },
    ],
  );
  fixtures.push({
    name: 'spatialbench',
    rows: [
      { key: 'Is there a cup', reply: '<answer>Yes.</answer>', corrected: true, reference: true, task: 'existence' },
      // grade_answer's integer normalisation: "3.0" is "3".
      { key: 'How many apples', reply: '<answer>3.0</answer>', corrected: true, reference: true, task: 'counting' },
    ],
  });

  // SpatialReasonerEval (hunarbatra/SpatialReasonerEval): choices as a Python list literal.
  await writeHubParquet(
    join(dataDir, 'SpatialReasonerEval/data/train-00000-of-00001.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'prompt', type: 'string' },
      { name: 'answer', type: 'string' },
      { name: 'choices', type: 'string' },
      { name: 'task', type: 'string' },
    ],
    [
      { image: await img(84, 56, 'sre1.png'), prompt: 'Which is closer to the camera?\n(A) the car\n(B) the tree', answer: '(A)', choices: "['the car', 'the tree']", task: 'Depth' },
      { image: await img(84, 56, 'sre2.png'), prompt: "Which is farther from the bench?\n(A) the dog's bowl\n(B) the lamp", answer: '(B)', choices: '["the dog\'s bowl", \'the lamp\']', task: 'Distance' },
    ],
  );
  fixtures.push({
    name: 'spatialreasoner',
    rows: [
      { key: 'Which is closer to the camera?', reply: '<answer>(A) the car</answer>', corrected: true, reference: true, task: 'Depth' },
      { key: 'farther from the bench', reply: "<answer>(B) the dog's bowl</answer>", corrected: false, reference: false, task: 'Distance' },
    ],
  });

  // RealWorldQA: image, question, answer.
  await writeHubParquet(
    join(dataDir, 'realworldqa/data/test-00000-of-00002.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'question', type: 'string' },
      { name: 'answer', type: 'string' },
    ],
    [
      {
        image: await img(84, 56, 'rw1.webp'),
        question: 'Which object is closer to the vehicle?\nA. the truck\nB. the sign\nPlease answer directly with only the letter of the correct option and nothing else.',
        answer: 'A',
      },
    ],
  );
  await writeHubParquet(
    join(dataDir, 'realworldqa/data/test-00001-of-00002.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'question', type: 'string' },
      { name: 'answer', type: 'string' },
    ],
    [{ image: await img(84, 56, 'rw2.webp'), question: 'How many lanes does the road have?\nPlease answer directly with a single word or number.', answer: '2' }],
  );
  fixtures.push({
    name: 'realworldqa',
    rows: [
      { key: 'closer to the vehicle', reply: '<answer>A</answer>', corrected: true, reference: true },
      { key: 'How many lanes', reply: '<answer>two</answer>', corrected: false, reference: false },
    ],
  });

  // RoboSpatial-Home (hunarbatra/RoboSpatial-Home): image, depth_image, prompt, answer, options, category.
  const robo = async (i: number, prompt: string, answer: string, category: string) => ({
    image: await img(84, 56, `rgb${i}.png`),
    depth_image: await img(84, 56, `depth${i}.png`),
    prompt: `${prompt}\n${lettered(['Yes', 'No'])}`,
    answer,
    options: ['Yes', 'No'],
    category,
  });
  await writeHubParquet(
    join(dataDir, 'RoboSpatial-Home/data/train-00000-of-00001.parquet'),
    [
      { name: 'image', type: 'image' },
      { name: 'depth_image', type: 'image' },
      { name: 'prompt', type: 'string' },
      { name: 'answer', type: 'string' },
      { name: 'options', type: 'list<string>' },
      { name: 'category', type: 'string' },
    ],
    [await robo(1, 'Is the mug to the left of the plate?', 'A', 'configuration'), await robo(2, 'Can the box fit on the shelf?', 'B', 'compatibility')],
  );
  fixtures.push({
    name: 'robospatial',
    rows: [
      { key: 'Is the mug', reply: '<answer>(A) Yes</answer>', corrected: true, reference: true, task: 'configuration' },
      { key: 'Can the box fit', reply: '<answer>(B) no</answer>', corrected: true, reference: true, task: 'compatibility' },
    ],
  });

  // HallusionBench (lmms-lab/HallusionBench): dataset card features, split "image".
  const hb = async (i: number, category: string, question: string, gt: string) => ({
    category,
    subcategory: 'chart',
    visual_input: '1',
    set_id: String(i),
    figure_id: '0',
    sample_note: 'fixture',
    question_id: String(i),
    question,
    gt_answer_details: gt === '1' ? 'It is.' : 'It is not.',
    gt_answer: gt,
    filename: `./hallusion_bench/VD/chart/${i}_0.png`,
    image: await img(70, 56, `${i}_0.png`),
  });
  await writeHubParquet(
    join(dataDir, 'HallusionBench/data/image-00000-of-00001.parquet'),
    ['category', 'subcategory', 'visual_input', 'set_id', 'figure_id', 'sample_note', 'question_id', 'question', 'gt_answer_details', 'gt_answer', 'filename']
      .map((name): Column => ({ name, type: 'string' }))
      .concat([{ name: 'image', type: 'image' }]),
    [await hb(1, 'VD', 'Is the red bar taller than the blue bar?', '1'), await hb(2, 'VS', 'Is the line going up?', '0')],
  );
  fixtures.push({
    name: 'hallusionbench',
    rows: [
      { key: 'red bar taller', reply: '<answer>(A) Yes</answer>', corrected: true, reference: true, task: 'VD' },
      { key: 'line going up', reply: '<answer>Yes</answer>', corrected: false, reference: false, task: 'VS' },
    ],
  });

  // STVQA-7K val: the project's STVQA writer.
  const { writeParquet } = await import('../lib/data/writer.js');
  const stvqa = async (i: number, question: string, options: string[], letter: string) => {
    const text = options[letter.charCodeAt(0) - 65]!;
    const scene = JSON.stringify({ objects: [{ id: 'chair.1', bbox: [4, 4, 30, 40] }, { id: 'table.1', bbox: [30, 10, 60, 50] }], relationships: [] });
    const qwo = `${question}\nOptions:\n${lettered(options)}`;
    return {
      image_id: String(i),
      images: await img(70, 56, `${i}.jpg`),
      problem: `<image>You are a vision-language assistant ...\nImage size: (70 x 56)\nNow answer the following question:\n\nQ. ${qwo}`,
      question_only: question,
      answer_only: letter,
      answer_option_text: `<scene>${scene}</scene>\n<answer>(${letter}) ${text}</answer>`,
      answer_option_text_only: `(${letter}) ${text}`,
      question_with_options: qwo,
      options,
      category: 'relation',
      level: 'easy',
      rating: 8,
    };
  };
  await writeParquet(join(dataDir, 'STVQA-7K/data/val-00000-of-00001.parquet'), [
    await stvqa(7, 'Where is the chair with respect to the table?', ['behind', 'in front of', 'beside'], 'A'),
    await stvqa(8, 'Where is the lamp relative to the desk?', ['above', 'below'], 'A'),
  ]);
  fixtures.push({
    name: 'stvqa',
    rows: [
      { key: 'Where is the chair', reply: '<observe>.</observe><scene>{}</scene><think>.</think><answer>(A) behind</answer>', corrected: true, reference: true, task: 'relation' },
      // A label beyond the options names nothing; the reference scores it as A.
      { key: 'relative to the desk', reply: '<answer>(C) beside</answer>', corrected: false, reference: true, task: 'relation' },
    ],
  });
  return fixtures;
}
