/**
 * Template question synthesis: every answer agrees with the geometry and predicates it came
 * from (recomputed here independently), rows are valid STVQA rows whose ground truth the
 * spatial reward accepts (a gold completion scores 1), balancing hits the requested shares,
 * the loaders read Visual Genome and VG150 input, and output is deterministic for a seed.
 */
import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpatialReward, parseGroundTruth, parseImageSize, type RewardInput } from '../lib/rewards/index.js';
import {
  CATEGORIES,
  DEFAULT_MARGINS,
  PREDICATE_GROUPS,
  REACH_KINDS,
  allocations,
  balance,
  buildRow,
  fromVg150Row,
  generateQuestions,
  groupOf,
  normaliseGraph,
  pluralLabel,
  pyJsonDumps,
  questionSubgraph,
  readVisualGenome,
  readVg150Jsonl,
  renderProblem,
  synthesizeDataset,
  synthesizeRows,
  type Category,
  type GraphObject,
  type NormalisedGraph,
  type Question,
  type SceneGraph,
  type SynthRow,
} from '../lib/synth/index.js';
import { mulberry32 } from '../lib/random.js';
import { synthCommand } from '../lib/cli/synth.js';

const dir = mkdtempSync(join(tmpdir(), 'st-synth-'));

// ---------------------------------------------------------------------------------------
// random scene graphs

const LABELS = [
  'man', 'woman', 'person', 'dog', 'bench', 'car', 'tree', 'umbrella', 'horse', 'traffic light',
  'cup', 'table', 'bike', 'kite', 'boat', 'lamp', 'shirt', 'hair', 'wheel', 'road',
];
const SPATIAL_PREDICATES = Object.values(PREDICATE_GROUPS).flat();
const PREDICATES = [
  ...SPATIAL_PREDICATES,
  ...Object.values(REACH_KINDS).flat(),
  'facing away',
  'has',
  'wearing',
  'of',
  'with',
  'to the left of',
];

/** Random graphs; box sides are at least `minSide` of the image's. */
const sceneGraphArb = (minSide: number): fc.Arbitrary<SceneGraph> => fc
  .record({
    width: fc.integer({ min: 64, max: 1400 }),
    height: fc.integer({ min: 64, max: 1400 }),
    id: fc.integer({ min: 1, max: 1e6 }),
    objects: fc.array(
      fc.record({
        label: fc.constantFrom(...LABELS),
        fx: fc.double({ min: 0, max: 0.98, noNaN: true }),
        fy: fc.double({ min: 0, max: 0.98, noNaN: true }),
        fw: fc.double({ min: minSide, max: 1, noNaN: true }),
        fh: fc.double({ min: minSide, max: 1, noNaN: true }),
      }),
      { minLength: 1, maxLength: 9 },
    ),
    relations: fc.array(fc.record({ s: fc.nat(), o: fc.nat(), predicate: fc.constantFrom(...PREDICATES) }), { maxLength: 12 }),
  })
  .map(({ width, height, id, objects, relations }) => ({
    image: { image_id: id, width, height },
    objects: objects.map((o, i) => {
      const x = Math.floor(o.fx * (1 - minSide) * width);
      const y = Math.floor(o.fy * (1 - minSide) * height);
      return {
        object_id: i + 1,
        names: [o.label],
        x,
        y,
        w: Math.min(width - x, Math.max(1, Math.ceil(minSide * width), Math.floor(o.fw * (width - x)))),
        h: Math.min(height - y, Math.max(1, Math.ceil(minSide * height), Math.floor(o.fh * (height - y)))),
      };
    }),
    relationships: relations.map((r) => ({
      subject_id: (r.s % objects.length) + 1,
      object_id: (r.o % objects.length) + 1,
      predicate: r.predicate,
    })),
  }));

/** A deterministic stream of random graphs rich in relations (for the large runs). */
function* randomGraphs(n: number, seed: number): Generator<SceneGraph> {
  const rnd = mulberry32(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(rnd() * items.length)] as T;
  const vocabulary = [
    'man', 'dog', 'cat', 'bench', 'car', 'tree', 'umbrella', 'horse', 'traffic light', 'cup', 'table', 'bike',
    'kite', 'boat', 'lamp', 'bottle', 'clock', 'vase', 'chair', 'laptop', 'pizza', 'plate', 'book', 'bus',
    'truck', 'sheep', 'cow', 'bird', 'bag', 'box', 'shirt', 'hair', 'window', 'street',
  ];
  const predicates = [...SPATIAL_PREDICATES, 'behind', 'in front of', 'holding', 'riding', 'carrying', 'looking at', 'has', 'of'];
  for (let i = 0; i < n; i++) {
    const width = 320 + Math.floor(rnd() * 900);
    const height = 240 + Math.floor(rnd() * 700);
    const k = 5 + Math.floor(rnd() * 10);
    const objects = [];
    for (let j = 0; j < k; j++) {
      const w = Math.max(4, Math.floor(rnd() * width * 0.45));
      const h = Math.max(4, Math.floor(rnd() * height * 0.45));
      objects.push({ object_id: j, names: [pick(vocabulary)], x: Math.floor(rnd() * (width - w)), y: Math.floor(rnd() * (height - h)), w, h });
    }
    const relationships = [];
    const r = 4 + Math.floor(rnd() * 10);
    for (let j = 0; j < r; j++) relationships.push({ subject_id: Math.floor(rnd() * k), object_id: Math.floor(rnd() * k), predicate: pick(predicates) });
    yield { image: { image_id: `img${seed}-${i}`, width, height }, objects, relationships };
  }
}

// ---------------------------------------------------------------------------------------
// independent recomputation of answers

function centre(o: GraphObject): [number, number] {
  return [(o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2];
}

/** The single object with a label (the generator must only name unique labels). */
function only(graph: NormalisedGraph, label: string): GraphObject {
  const found = graph.objects.filter((o) => o.label === label);
  if (found.length !== 1) throw new Error(`"${label}" names ${found.length} objects`);
  return found[0] as GraphObject;
}

function predicates(graph: NormalisedGraph, s: GraphObject, o: GraphObject): string[] {
  return graph.relations.filter((r) => r.subject === s.index && r.object === o.index).map((r) => r.predicate);
}

const VERB = /^(holding|carrying|holds|touching|leaning against|leaning on|riding|riding on|wearing|wears)$/;
const progressiveForm = (p: string) => (p === 'holds' ? 'holding' : p === 'wears' ? 'wearing' : p);
const reachVerbs = Object.values(REACH_KINDS).flat().map(progressiveForm);

/** Checks a distractor of a relation question: outside the annotated groups and false by geometry. */
function checkRelationDistractor(graph: NormalisedGraph, s: GraphObject, o: GraphObject, option: string): string | undefined {
  const group = groupOf(option);
  const annotated = [...predicates(graph, s, o), ...predicates(graph, o, s)].map(groupOf);
  if (group === undefined) return `distractor "${option}" is in no group`;
  if (annotated.includes(group)) return `distractor "${option}" is in an annotated group`;
  const [sx, sy] = centre(s);
  const [ox, oy] = centre(o);
  const overlapArea = Math.max(0, Math.min(s.box[2], o.box[2]) - Math.max(s.box[0], o.box[0])) * Math.max(0, Math.min(s.box[3], o.box[3]) - Math.max(s.box[1], o.box[1]));
  const gx = Math.max(0, Math.max(s.box[0], o.box[0]) - Math.min(s.box[2], o.box[2]));
  const gy = Math.max(0, Math.max(s.box[1], o.box[1]) - Math.min(s.box[3], o.box[3]));
  const apart = Math.hypot(gx, gy) > 0;
  switch (option) {
    case 'left of':
      return sx > ox ? undefined : 'left of, but the subject is not to the right';
    case 'right of':
      return sx < ox ? undefined : 'right of, but the subject is not to the left';
    case 'above':
      return sy > oy ? undefined : 'above, but the subject is not lower';
    case 'below':
      return sy < oy ? undefined : 'below, but the subject is not higher';
    case 'behind':
      return s.box[3] > o.box[3] ? undefined : 'behind, but the subject is not nearer';
    case 'in front of':
      return s.box[3] < o.box[3] ? undefined : 'in front of, but the subject is not farther';
    case 'far from':
      return overlapArea > 0 ? undefined : 'far from, but the boxes do not overlap';
    case 'touching':
    case 'on top of':
      return apart ? undefined : `${option}, but the boxes touch`;
    case 'inside':
      return overlapArea < s.area ? undefined : 'inside, but the subject is inside';
    default:
      return `unexpected distractor "${option}"`;
  }
}

/** The answer recomputed from the graph, or a string starting with "!" naming a problem. */
function recompute(graph: NormalisedGraph, q: Question): string | undefined {
  const text = q.question;
  let m: RegExpExecArray | null;
  switch (q.category) {
    case 'relation': {
      m = /^Where is the (.+) with respect to the (.+)\?$/.exec(text);
      if (!m) return '!unparsed';
      const s = only(graph, m[1] as string);
      const o = only(graph, m[2] as string);
      const annotated = predicates(graph, s, o);
      const answer = q.options[q.answerIndex] as string;
      if (!annotated.includes(answer)) return `!"${answer}" is not annotated for ${s.label} -> ${o.label}`;
      for (const option of q.options) {
        if (option === answer) continue;
        const problem = checkRelationDistractor(graph, s, o, option);
        if (problem) return `!${problem}`;
      }
      return answer;
    }
    case 'reach': {
      m = /^What is the (.+) doing with the (.+)\?$/.exec(text);
      if (m) {
        const s = only(graph, m[1] as string);
        const o = only(graph, m[2] as string);
        const annotated = predicates(graph, s, o).map(progressiveForm).filter((p) => reachVerbs.includes(p));
        const answer = q.options[q.answerIndex] as string;
        if (!annotated.includes(answer)) return `!"${answer}" is not annotated`;
        for (const option of q.options) if (option !== answer && annotated.includes(option)) return `!distractor "${option}" is annotated`;
        return answer;
      }
      m = /^What is the (.+) (holding|carrying|touching|leaning against|leaning on|riding on|riding|wearing)\?$/.exec(text);
      if (m) {
        const s = only(graph, m[1] as string);
        const verb = m[2] as string;
        const targets = graph.relations.filter((r) => r.subject === s.index && progressiveForm(r.predicate) === verb);
        if (targets.length !== 1) return `!${targets.length} objects are ${verb} by the ${s.label}`;
        const answer = graph.objects[targets[0]!.object]!.label;
        for (const option of q.options) {
          if (option === answer) continue;
          const x = only(graph, option);
          const linked = graph.relations.some(
            (r) => ((r.subject === s.index && r.object === x.index) || (r.subject === x.index && r.object === s.index)) && reachVerbs.includes(progressiveForm(r.predicate)),
          );
          const gx = Math.max(0, Math.max(s.box[0], x.box[0]) - Math.min(s.box[2], x.box[2]));
          const gy = Math.max(0, Math.max(s.box[1], x.box[1]) - Math.min(s.box[3], x.box[3]));
          if (linked || Math.hypot(gx, gy) === 0) return `!distractor "${option}" may be ${verb}`;
        }
        return answer;
      }
      m = /^Is the (.+?) (holding|carrying|touching|leaning against|leaning on|riding on|riding|wearing) the (.+)\?$/.exec(text);
      if (!m) return '!unparsed';
      const verb = m[2] as string;
      if (!VERB.test(verb)) return '!bad verb';
      const s = only(graph, m[1] as string);
      const o = only(graph, m[3] as string);
      return predicates(graph, s, o).map(progressiveForm).includes(verb) ? 'yes' : 'no';
    }
    case 'existence': {
      m = /^Is there an? (.+) in the image\?$/.exec(text);
      if (!m) return '!unparsed';
      return graph.objects.some((o) => o.label === m![1]) ? 'yes' : 'no';
    }
    case 'depth': {
      m = /^Which is closer to the camera, the (.+) or the (.+)\?$/.exec(text);
      if (!m) return '!unparsed';
      const a = only(graph, m[1] as string);
      const b = only(graph, m[2] as string);
      const votes = new Set<string>();
      for (const r of graph.relations) {
        const pair = (r.subject === a.index && r.object === b.index) || (r.subject === b.index && r.object === a.index);
        if (!pair) continue;
        const subject = r.subject === a.index ? a : b;
        const object = subject === a ? b : a;
        if (r.predicate === 'behind' || r.predicate === 'at the back of') votes.add(object.label);
        if (r.predicate === 'in front of') votes.add(subject.label);
      }
      if (votes.size > 1) return '!conflicting predicates';
      if (votes.size === 1) return [...votes][0];
      if (Math.abs(a.box[3] - b.box[3]) < DEFAULT_MARGINS.depthGap * graph.height) return '!bottom edges too close';
      return a.box[3] > b.box[3] ? a.label : b.label;
    }
    case 'instance_location': {
      m = /^In which part of the image is the (.+) located\?$/.exec(text);
      if (!m) return '!unparsed';
      const [cx, cy] = centre(only(graph, m[1] as string));
      const col = ['left', '', 'right'][Math.min(2, Math.floor((3 * cx) / graph.width))] as string;
      const row = ['top', '', 'bottom'][Math.min(2, Math.floor((3 * cy) / graph.height))] as string;
      return row && col ? `${row}-${col}` : row || col || 'centre';
    }
    case 'size': {
      m = /^Which appears larger in the image, the (.+) or the (.+)\?$/.exec(text);
      if (m) {
        const a = only(graph, m[1] as string);
        const b = only(graph, m[2] as string);
        if (Math.max(a.area, b.area) < 1.3 * Math.min(a.area, b.area)) return '!areas too close';
        return a.area > b.area ? a.label : b.label;
      }
      m = /^Does the (.+) appear (larger or smaller|taller or shorter) than the (.+) in the image\?$/.exec(text);
      if (!m) return '!unparsed';
      const a = only(graph, m[1] as string);
      const b = only(graph, m[3] as string);
      if (m[2] === 'larger or smaller') {
        if (Math.max(a.area, b.area) < 1.3 * Math.min(a.area, b.area)) return '!areas too close';
        return a.area > b.area ? 'larger' : 'smaller';
      }
      const ha = a.box[3] - a.box[1];
      const hb = b.box[3] - b.box[1];
      if (Math.max(ha, hb) < 1.3 * Math.min(ha, hb)) return '!heights too close';
      return ha > hb ? 'taller' : 'shorter';
    }
    case 'distance': {
      m = /^Which object is closer to the (.+), the (.+) or the (.+)\?$/.exec(text);
      if (!m) return '!unparsed';
      const [rx, ry] = centre(only(graph, m[1] as string));
      const a = only(graph, m[2] as string);
      const b = only(graph, m[3] as string);
      const da = Math.hypot(centre(a)[0] - rx, centre(a)[1] - ry);
      const db = Math.hypot(centre(b)[0] - rx, centre(b)[1] - ry);
      if (Math.min(da, db) > 0.75 * Math.max(da, db)) return '!near tie';
      return da < db ? a.label : b.label;
    }
    case 'orientation': {
      m = /^From the (.+)'s perspective, which direction is the (.+)\?$/.exec(text);
      if (m && m[1] !== 'camera') {
        const s = only(graph, m[1] as string);
        const o = only(graph, m[2] as string);
        const said = new Set<string>();
        for (const p of predicates(graph, s, o)) {
          if (['facing', 'facing towards', 'looking at', 'watching'].includes(p)) said.add('in front');
          if (p === 'facing away' || p === 'facing away from') said.add('behind');
        }
        return said.size === 1 ? [...said][0] : '!no single facing predicate';
      }
      m = /^From the camera's viewpoint, is the (.+) to the left or to the right of the (.+)\?$/.exec(text);
      if (!m) return '!unparsed';
      const a = only(graph, m[1] as string);
      const b = only(graph, m[2] as string);
      const dx = centre(a)[0] - centre(b)[0];
      if (Math.abs(dx) < 0.1 * graph.width) return '!centres too close';
      return dx < 0 ? 'to the left' : 'to the right';
    }
    case 'count': {
      m = /^How many (.+) are there in the image\?$/.exec(text);
      if (!m) return '!unparsed';
      const label = [...graph.byLabel.keys()].find((l) => pluralLabel(l) === m![1]);
      if (label === undefined) return '!no such label';
      return String(graph.objects.filter((o) => o.label === label).length);
    }
  }
}

function checkQuestion(graph: NormalisedGraph, q: Question): string | undefined {
  if (q.options.length < 2 || q.options.length > 4) return `${q.options.length} options`;
  if (new Set(q.options).size !== q.options.length) return 'repeated option';
  if (!(q.answerIndex >= 0 && q.answerIndex < q.options.length)) return 'answer index out of range';
  if (!['easy', 'medium', 'hard'].includes(q.level)) return `level ${q.level}`;
  if (!(Number.isInteger(q.rating) && q.rating >= 1 && q.rating <= 10)) return `rating ${q.rating}`;
  if (/\b[a-z_]+\.\d+\b/.test(q.question) || q.options.some((o) => /\b[a-z_]+\.\d+\b/.test(o))) return 'an id in the text';
  let expected: string | undefined;
  try {
    expected = recompute(graph, q);
  } catch (error) {
    return (error as Error).message;
  }
  if (expected === undefined || expected.startsWith('!')) return expected ?? 'not recomputed';
  const given = q.options[q.answerIndex];
  return given === expected ? undefined : `answer "${given}", recomputed "${expected}"`;
}

// ---------------------------------------------------------------------------------------

t.test('every generated answer agrees with the geometry and predicates it came from', async (t) => {
  const seen = new Map<Category, number>();
  fc.assert(
    fc.property(sceneGraphArb(0.01), fc.nat(1000), (sceneGraph, seed) => {
      const graph = normaliseGraph(sceneGraph);
      const { questions } = generateQuestions(graph, { seed, maxPerCategory: Infinity });
      for (const q of questions) {
        seen.set(q.category, (seen.get(q.category) ?? 0) + 1);
        const problem = checkQuestion(graph, q);
        if (problem) throw new Error(`${q.category}: "${q.question}" [${q.options.join(' | ')}]: ${problem}`);
      }
    }),
    { numRuns: 1000 },
  );
  for (const c of CATEGORIES) t.ok((seen.get(c) ?? 0) > 0, `${c}: ${seen.get(c) ?? 0} questions checked`);
});

/**
 * Gold completions built from the rows, scored by the spatial reward. A perfect box still
 * scores mciou = 1 - eps / (2 a) for a box of normalised area a (eps = 1e-7 in the IoU
 * denominator), so overall is 1 within 1e-6 only for boxes of about 1% of the image or
 * more; `epsilonShortfall` is the resulting bound on 1 - overall for each row.
 */
async function goldScores(rows: readonly SynthRow[]) {
  const reward = new SpatialReward({ similarity: 'exact' });
  const inputs: RewardInput[] = rows.map((row) => {
    const image = parseImageSize(row.problem);
    if (!image) throw new Error('no image size in the problem');
    const scene = /<scene>([\s\S]*?)<\/scene>/.exec(row.answer_option_text)?.[1] ?? '';
    const completion = `<observe>The relevant objects.</observe>\n<scene>${scene}</scene>\n<think>Reading the scene graph.</think>\n<answer>${row.answer_option_text_only}</answer>`;
    return { completion, groundTruth: row.answer_option_text, prompt: row.problem, image };
  });
  return (await reward.scoreBatch(inputs)).map((s, i) => ({ ...s, epsilonShortfall: epsilonShortfall(rows[i] as SynthRow) }));
}

function epsilonShortfall(row: SynthRow): number {
  const { width, height } = parseImageSize(row.problem)!;
  const objects = parseGroundTruth(row.answer_option_text).objects;
  if (objects.length === 0) return 0;
  const deficits = objects.map(({ box }) => 1e-7 / (2 * ((box[2] - box[0]) / width) * ((box[3] - box[1]) / height)));
  return 0.2 * 1.01 * (deficits.reduce((a, b) => a + b, 0) / objects.length);
}

function checkRow(row: SynthRow): string | undefined {
  const gt = parseGroundTruth(row.answer_option_text);
  if (gt.answer !== row.answer_option_text_only) return `answer ${gt.answer} vs ${row.answer_option_text_only}`;
  for (const o of gt.objects) if (!/^[a-zA-Z_]+\.\d+$/.test(o.id)) return `bad id ${o.id}`;
  for (const r of gt.scene['relationships'] as { subject: string; object: string }[])
    if (!/^[a-zA-Z_]+\.\d+$/.test(r.subject) || !/^[a-zA-Z_]+\.\d+$/.test(r.object)) return 'bad relation id';
  if (new Set(gt.objects.map((o) => o.id)).size !== gt.objects.length) return 'repeated id';
  const letter = row.answer_only;
  const index = letter.charCodeAt(0) - 65;
  if (row.options[index] !== row.answer_text_only) return 'answer_only does not point at answer_text_only';
  if (row.answer_option_text_only !== `(${letter}) ${row.answer_text_only}`) return 'answer_option_text_only';
  const scene = row.answer_option_text.slice(0, row.answer_option_text.indexOf('\n<answer>'));
  if (row.answer !== `${scene}\n<answer>${letter}</answer>`) return 'answer';
  if (row.answer_text !== `${scene}\n<answer>${row.answer_text_only}</answer>`) return 'answer_text';
  const expectedOptions = row.options.map((o, i) => `\n(${'ABCD'[i]}) ${o}`).join('');
  if (row.question_with_options !== `${row.question_only}\nOptions:${expectedOptions}`) return 'question_with_options';
  if (!row.problem.startsWith('<image> ')) return 'problem does not start with <image>';
  if (!row.problem.endsWith(`Now answer the following question:\n\nQ. ${row.question_with_options}`)) return 'problem tail';
  if (!/"objects": \[/.test(scene) || !/\], "relationships": \[/.test(scene)) return 'scene JSON layout';
  return undefined;
}

t.test('rows: valid ids, parseable ground truth, and a gold completion scores 1', async (t) => {
  const rows: SynthRow[] = [];
  fc.assert(
    // Boxes of at least 12% of each side (>= 1.4% of the image): the eps shortfall stays < 1e-6.
    fc.property(sceneGraphArb(0.12), (sceneGraph) => {
      const graph = normaliseGraph(sceneGraph);
      for (const q of generateQuestions(graph, { seed: 3, maxPerCategory: 2 }).questions) {
        const row = buildRow(q, graph, 'img.jpg');
        const problem = checkRow(row);
        if (problem) throw new Error(`${q.question}: ${problem}\n${row.answer_option_text}`);
        rows.push(row);
      }
    }),
    { numRuns: 150 },
  );
  t.ok(rows.length > 200, `${rows.length} rows`);
  const scores = await goldScores(rows);
  const bad = scores.map((s, i) => [s.overall, i] as const).filter(([s]) => Math.abs(s - 1) > 1e-6);
  t.same(bad.map(([s, i]) => `${s} ${rows[i]?.answer_option_text}`), [], 'every gold completion scores overall 1.0 within 1e-6');
  t.ok(rows.some((r) => JSON.parse(/<scene>(.*)<\/scene>/.exec(r.answer)![1]!).objects.some((o: { id: string }) => o.id.startsWith('traffic_light.'))),
    'multi-word labels become traffic_light.N');
});

t.test('a large synthetic run: category shares match the balance, rows are sound', async (t) => {
  const target = 2000;
  const result = await synthesizeDataset(randomGraphs(6000, 11), { seed: 5, target, perImage: 4 });
  const total = result.train.length + result.val.length;
  t.ok(total >= 0.99 * target, `${total} rows for a target of ${target}`);
  const alloc = allocations(target);
  for (const c of CATEGORIES) {
    const n = result.train.filter((r) => r.category === c).length + result.val.filter((r) => r.category === c).length;
    const wanted = c === 'relation' ? 0.5 : 0.0625;
    t.ok(Math.abs(n / total - wanted) <= 0.01, `${c}: ${n}/${total} = ${(n / total).toFixed(4)} (requested ${wanted})`);
    t.equal(result.val.filter((r) => r.category === c).length, alloc[c].val, `${c}: val = max(1, floor(0.1 alloc))`);
  }
  const problems = [...result.train, ...result.val].map(checkRow).filter((p) => p !== undefined);
  t.same(problems, [], 'every row is consistent');
  const sample = [...result.train.slice(0, 300), ...result.val.slice(0, 100)];
  const scores = await goldScores(sample);
  t.ok(scores.every((s) => s.format === 1 && s.count === 1 && s.accuracy === 1), 'gold completions: format, count and accuracy 1');
  const off = scores.filter((s) => !(1 - s.overall <= 1e-6 + s.epsilonShortfall && s.overall <= 1 + 1e-12));
  t.same(off, [], 'overall is 1 up to 1e-6 and the eps shortfall of small boxes');
  t.ok(scores.filter((s) => s.epsilonShortfall < 1e-7).every((s) => Math.abs(s.overall - 1) <= 1e-6), 'exactly 1 (1e-6) where boxes are not small');
  const levels = new Set(result.train.map((r) => r.level));
  t.same([...levels].sort(), ['easy', 'hard', 'medium'], 'all three levels occur');
  // Rating-descending order within each pool: no left-out row of a category outrates... the taken ones' minimum per pool is
  // not directly visible; check instead that ratings are in range.
  t.ok(result.train.every((r) => r.rating >= 1 && r.rating <= 10));
});

t.test('balance: allocations, rating order, val split', async (t) => {
  const a = allocations(10_000);
  t.same(a.relation, { total: 5000, train: 4500, val: 500 });
  t.same(a.count, { total: 625, train: 563, val: 62 });
  t.same(allocations(100).size, { total: 6, train: 5, val: 1 });
  const rows = Array.from({ length: 400 }, (_, i) => ({ category: CATEGORIES[i % 9] as Category, rating: (i * 7) % 10 + 1, i }));
  const r1 = balance(rows, { target: 90, seed: 1 });
  const r2 = balance(rows, { target: 90, seed: 1 });
  t.same(r1, r2, 'deterministic');
  t.equal(r1.train.filter((r) => r.category === 'relation').length, 41);
  t.equal(r1.val.filter((r) => r.category === 'relation').length, 4);
  // Within a category, every train row taken is rated at least as high as every train-pool row left.
  const size = r1.train.filter((r) => r.category === 'size');
  t.ok(Math.min(...size.map((r) => r.rating)) >= 8, 'top-rated rows are taken');
  const short = balance(rows.slice(0, 20), { target: 1000, seed: 1 });
  t.equal(short.train.length + short.val.length, 20, 'categories with fewer rows give all they have');
});

t.test('refusals: several instances, parts, clothing and trivial relations', async (t) => {
  const graph = normaliseGraph({
    image: { image_id: 1, width: 1000, height: 800 },
    objects: [
      { object_id: 1, names: ['man'], x: 100, y: 100, w: 200, h: 500 },
      { object_id: 2, names: ['man'], x: 600, y: 120, w: 180, h: 480 },
      { object_id: 3, names: ['shirt'], x: 120, y: 200, w: 150, h: 150 },
      { object_id: 4, names: ['dog'], x: 400, y: 500, w: 150, h: 120 },
      { object_id: 5, names: ['hair'], x: 140, y: 100, w: 60, h: 40 },
      { object_id: 6, names: ['car'], x: 420, y: 50, w: 300, h: 200 },
      { object_id: 7, names: ['road'], x: 0, y: 600, w: 1000, h: 200 },
    ],
    relationships: [
      { subject_id: 1, object_id: 3, predicate: 'wearing' },
      { subject_id: 1, object_id: 4, predicate: 'behind' },
      { subject_id: 4, object_id: 5, predicate: 'near' },
      { subject_id: 6, object_id: 7, predicate: 'on' },
      { subject_id: 4, object_id: 6, predicate: 'below' },
    ],
  });
  const { questions, refusals } = generateQuestions(graph, { seed: 1, maxPerCategory: Infinity });
  const texts = questions.map((q) => q.question);
  t.notOk(texts.some((q) => / man\b/.test(q) && !q.startsWith('How many')), 'no question names one of two men');
  t.ok(texts.includes('How many men are there in the image?'), 'but the men can be counted');
  t.notOk(texts.some((q) => /shirt|hair|road/.test(q)), 'no question about clothing, body parts or background');
  t.ok(texts.includes('Where is the dog with respect to the car?'), 'dog below car is asked');
  t.ok((refusals.relation['trivial-relation'] ?? 0) >= 2, 'man wearing shirt and car on road are trivial');
  t.ok((refusals.relation['several-instances'] ?? 0) >= 1, 'man behind dog: two men');
  t.ok((refusals.instance_location['clothing'] ?? 0) >= 1);
  t.ok((refusals.instance_location['body-part'] ?? 0) >= 1);
  t.ok((refusals.instance_location['several-instances'] ?? 0) >= 2);

  const trees = normaliseGraph({
    image: { image_id: 2, width: 100, height: 100 },
    objects: [{ object_id: 1, names: ['trees'], x: 0, y: 0, w: 50, h: 50 }],
    relationships: [],
  });
  const absent = generateQuestions(trees, { absentVocabulary: ['tree', 'man'] }).questions.filter((q) => q.category === 'existence');
  t.same(absent.map((q) => q.question), ['Is there a man in the image?'], 'no "no" question about a label present in the plural');
  t.equal(generateQuestions(trees, { absentVocabulary: ['tree'] }).refusals.existence['no-absent-label'], 1);
});

t.test('ground-truth sub-graph: plural, lemma and multi-word matching, ids, JSON layout', async (t) => {
  const graph = normaliseGraph({
    image: { image_id: 'x', width: 640, height: 480 },
    objects: [
      { object_id: 'a', names: ['Traffic Light'], x: 10, y: 10, w: 20, h: 50 },
      { object_id: 'b', name: 'traffic light', x: 300, y: 10, w: 20, h: 50 },
      { object_id: 'c', names: ['men'], x: 100, y: 100, w: 100, h: 300 },
      { object_id: 'd', names: ['bus'], x: 200, y: 100, w: 300, h: 200 },
      { object_id: 'e', names: ['tree'], x: 0, y: 0, w: 50, h: 50 },
    ],
    relationships: [
      { subject_id: 'c', object_id: 'd', predicate: 'Next To' },
      { subject_id: 'c', object_id: 'e', predicate: 'near' },
    ],
  });
  const sub = questionSubgraph(graph, 'How many traffic lights are near the man and the buses?');
  t.same(
    sub.objects.map((o) => o.id),
    ['traffic_light.1', 'traffic_light.2', 'men.1', 'bus.1'],
  );
  t.same(sub.relationships, [{ subject: 'men.1', predicate: 'next to', object: 'bus.1' }], 'relations need both ends kept; predicate not checked');
  t.equal(
    pyJsonDumps({ objects: [{ id: 'man.1', bbox: [1, 2, 3.5, 4] }], relationships: [] }),
    '{"objects": [{"id": "man.1", "bbox": [1, 2, 3.5, 4]}], "relationships": []}',
  );
  t.equal(pyJsonDumps({ s: 'café "x"', n: 1e-7 }), '{"s": "caf\\u00e9 \\"x\\"", "n": 1e-07}');
  t.same(questionSubgraph(graph, "Is the tree's shadow long?").objects.map((o) => o.id), ['tree.1'], "possessive 's");
});

t.test('the prompt: one template, every structural element', async (t) => {
  const problem = renderProblem(800, 600, 'Where is the cat with respect to the sofa?', ['under', 'on']);
  t.ok(problem.startsWith('<image> You are a vision-language assistant'));
  t.same(parseImageSize(problem), { width: 800, height: 600 });
  t.equal(problem.match(/Image size: \(/g)?.length, 1, 'a single image size line');
  for (const tag of ['observe', 'scene', 'think', 'answer']) t.equal(problem.match(new RegExp(`^<${tag}>$`, 'gm'))?.length, 2, `<${tag}> on its own line in skeleton and example`);
  t.match(problem, /"object_name\.number"/);
  t.match(problem, /\[x1, y1, x2, y2\]/);
  t.match(problem, /\{"id": "bike\.1", "bbox": \[0, 272, 310, 551\]\}/);
  t.match(problem, /\{"id": "man\.1", "bbox": \[0, 165, 38, 278\]\}/);
  t.match(problem, /\{"subject": "man\.1", "predicate": "behind", "object": "bike\.1"\}/);
  t.match(problem, /Q\. Where is the man with respect to the bike\?\nOptions: \(A\) behind \(B\) in front of \(C\) beside \(D\) on top of/);
  t.match(problem, /<answer>\n\(A\) behind\n<\/answer>/);
  t.ok(problem.endsWith('Image size: (800 x 600)\n\nNow answer the following question:\n\nQ. Where is the cat with respect to the sofa?\nOptions:\n(A) under\n(B) on'));
});

t.test('Visual Genome: streamed loader on a VG-format fixture, and the synth command', async (t) => {
  const vg = join(dir, 'vg');
  mkdirSync(join(vg, 'images', 'VG_100K'), { recursive: true });
  const entries = [...randomGraphs(60, 3)].map((g, i) => ({
    image_id: i + 1,
    objects: g.objects.map((o) => ({ ...o, object_id: 1000 * (i + 1) + Number(o.object_id), synsets: ['x.n.01'], merged_object_ids: [] })),
    relationships: g.relationships.map((r, k) => ({
      relationship_id: k,
      predicate: String(r.predicate).toUpperCase(),
      subject_id: 1000 * (i + 1) + Number(r.subject_id),
      object_id: 1000 * (i + 1) + Number(r.object_id),
      synsets: [],
    })),
  }));
  // Relationships.json style endpoint (nested object not in the object list).
  entries[0]!.relationships.push({
    relationship_id: 99,
    predicate: 'near',
    subject: { object_id: 5, x: 1, y: 2, w: 30, h: 40, name: 'kite' },
    object: { object_id: 1001, names: ['man'], x: 0, y: 0, w: 1, h: 1 },
  } as never);
  // A relation naming an object id that Visual Genome merged into another.
  (entries[1]!.objects[0] as { merged_object_ids: number[] }).merged_object_ids = [777777];
  entries[1]!.relationships.push({ relationship_id: 98, predicate: 'is Sitting On a', subject_id: 777777, object_id: 2001, synsets: [] });
  entries.push({ image_id: 999, objects: [], relationships: [] });
  writeFileSync(join(vg, 'scene_graphs.json'), JSON.stringify(entries, null, 1));
  const imageData = entries
    .filter((e) => e.image_id !== 999)
    .map((e) => ({ image_id: e.image_id, width: 1000 + e.image_id, height: 700, url: `https://cs.stanford.edu/people/rak248/VG_100K/${e.image_id}.jpg`, coco_id: null }));
  writeFileSync(join(vg, 'image_data.json'), JSON.stringify(imageData));
  for (const e of imageData) if (e.image_id !== 7) writeFileSync(join(vg, 'images', 'VG_100K', `${e.image_id}.jpg`), '');

  const missing: string[] = [];
  const graphs: SceneGraph[] = [];
  for await (const g of readVisualGenome(join(vg, 'scene_graphs.json'), join(vg, 'image_data.json'), { onMissingImage: (id) => missing.push(id) }))
    graphs.push(g);
  t.equal(graphs.length, 60);
  t.same(missing, ['999']);
  t.same(graphs[1]!.image, { image_id: '2', width: 1002, height: 700, file: 'VG_100K/2.jpg', url: 'https://cs.stanford.edu/people/rak248/VG_100K/2.jpg' });
  t.ok(graphs[0]!.objects.some((o) => o.object_id === 5 && o.name === 'kite'), 'a nested endpoint becomes an object');
  t.ok(graphs[0]!.relationships.some((r) => r.subject_id === '5' && r.predicate === 'near'));
  const normalised = normaliseGraph(graphs[0]!);
  t.ok(normalised.relations.every((r) => r.predicate === r.predicate.toLowerCase()));
  t.ok(
    graphs[1]!.relationships.some((r) => r.subject_id === String(entries[1]!.objects[0]!.object_id) && r.object_id === '2001'),
    'a merged object id is mapped to the object it was merged into',
  );
  const second = normaliseGraph(graphs[1]!);
  t.ok(second.relations.some((r) => r.predicate === 'sitting on'), 'raw predicates are normalised ("is Sitting On a")');
  writeFileSync(join(vg, 'broken.json'), JSON.stringify(entries.slice(0, 3)).slice(0, -40));
  await t.rejects(
    (async () => {
      for await (const _ of readVisualGenome(join(vg, 'broken.json'), join(vg, 'image_data.json')));
    })(),
    { name: 'JsonStreamError', message: /broken\.json: .*after 2 array elements/ },
  );

  const out = join(dir, 'out');
  await synthCommand([
    '--vg-scene-graphs', join(vg, 'scene_graphs.json'),
    '--vg-image-data', join(vg, 'image_data.json'),
    '--images', join(vg, 'images'),
    '--out', out,
    '--target', '400',
    '--seed', '2',
  ]);
  const train = readFileSync(join(out, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SynthRow);
  const val = readFileSync(join(out, 'val.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SynthRow);
  t.ok(train.length > 20 && val.length > 0, `${train.length} train, ${val.length} val`);
  for (const row of [...train, ...val]) {
    t.equal(checkRow(row), undefined);
    t.ok(existsSync(join(out, row.images.path)), 'image path resolves from the output folder');
    t.not(row.image_id, '7', 'an image without a file is skipped');
  }
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  t.equal(summary.stats.imagesSkipped['image-missing'], 1);
  t.equal(summary.stats.imagesSkipped['no-image-data'], 1);
  t.same(Object.keys(summary.stats.refused).sort(), [...CATEGORIES].sort());

  await t.rejects(synthCommand(['--out', out]), /give either/);
  await t.rejects(synthCommand(['--vg150', join(vg, 'nope.jsonl'), '--out', out]), /no such file/);
  await t.rejects(synthCommand(['--vg-scene-graphs', join(vg, 'scene_graphs.json'), '--vg-image-data', join(vg, 'image_data.json'), '--out', out]), /--images DIR is required/);
});

t.test('VG150 rows: JSON-string columns, ids to labels, JSONL reader', async (t) => {
  const row = {
    image_id: '42',
    objects: JSON.stringify([
      { id: 'man.1', bbox: [100, 50, 300, 400] },
      { id: 'bench.2', bbox: [50, 300, 600, 470] },
      { id: 'umbrella.3', bbox: [400, 20, 600, 200] },
    ]),
    relationships: JSON.stringify([
      { id: 'r1', subject: 'man.1', predicate: 'sitting on', object: 'bench.2' },
      { subject: 'man.1', predicate: 'holding', object: 'umbrella.3' },
    ]),
    width: 640,
    height: 480,
    image_path: 'img42.jpg',
  };
  const graph = normaliseGraph(fromVg150Row(row));
  t.same(graph.objects.map((o) => [o.label, o.box]), [
    ['man', [100, 50, 300, 400]],
    ['bench', [50, 300, 600, 470]],
    ['umbrella', [400, 20, 600, 200]],
  ]);
  t.same(graph.relations, [
    { subject: 0, object: 1, predicate: 'sitting on' },
    { subject: 0, object: 2, predicate: 'holding' },
  ]);
  const rows = generateQuestions(graph, { maxPerCategory: Infinity }).questions.map((q) => buildRow(q, graph, 'img42.jpg'));
  const rel = rows.find((r) => r.question_only === 'Where is the man with respect to the bench?');
  t.ok(rel, 'the relation question of the worked example');
  t.equal(rel?.answer_text_only, 'sitting on');
  t.match(rel?.answer_option_text ?? '', /^<scene>\{"objects": \[\{"id": "man\.1", "bbox": \[100, 50, 300, 400\]\}, \{"id": "bench\.1", "bbox": \[50, 300, 600, 470\]\}\], "relationships": \[\{"subject": "man\.1", "predicate": "sitting on", "object": "bench\.1"\}\]\}<\/scene>\n<answer>\([A-D]\) sitting on<\/answer>$/);
  t.throws(() => fromVg150Row({ ...row, width: undefined, height: undefined }), /no image size/);
  t.throws(() => fromVg150Row({ ...row, objects: '[{"id": "x.1"}]' }), /bbox/);

  const jsonl = join(dir, 'vg150.jsonl');
  writeFileSync(join(dir, 'img42.jpg'), '');
  writeFileSync(jsonl, JSON.stringify(row) + '\n\n' + JSON.stringify({ ...row, image_id: '43', image_path: 'missing.jpg' }) + '\n');
  const skipped: string[] = [];
  const graphs: SceneGraph[] = [];
  for await (const g of readVg150Jsonl(jsonl, { onSkip: (reason, id) => skipped.push(`${reason}:${id}`) })) graphs.push(g);
  t.equal(graphs.length, 1);
  t.equal(graphs[0]!.image.file, join(dir, 'img42.jpg'));
  t.same(skipped, ['image-missing:43']);
});

t.test('deterministic for a seed; the seed changes the output', async (t) => {
  const run = async (seed: number) => {
    const rows: SynthRow[] = [];
    for await (const row of synthesizeRows(randomGraphs(150, 9), { seed, target: 200 })) rows.push(row);
    return rows;
  };
  const a = await run(4);
  const b = await run(4);
  t.ok(a.length > 100);
  t.same(a, b, 'same seed, same rows');
  const c = await run(5);
  t.notSame(
    a.map((r) => r.options),
    c.map((r) => r.options),
    'another seed shuffles differently',
  );
  const d1 = await synthesizeDataset(randomGraphs(300, 9), { seed: 4, target: 200 });
  const d2 = await synthesizeDataset(randomGraphs(300, 9), { seed: 4, target: 200 });
  t.same(d1.train, d2.train);
  t.same(d1.val, d2.val);
});
