/**
 * Shapes-world scene graphs against the 3D layouts they describe, and the questions the
 * project's synthesis makes from them against the same 3D truth. The checks here recompute
 * the truth from raw positions, extents and silhouettes, not through truth.ts.
 */
import t from 'tap';
import { normaliseGraph, type SceneGraph } from '../lib/synth/scene-graph.js';
import { emptySynthStats, synthesizeRows } from '../lib/synth/synthesize.js';
import { gridCell } from '../lib/synth/questions.js';
import type { SynthRow } from '../lib/synth/row.js';
import { polygonArea } from '../lib/shapes/geometry.js';
import { FAMILY_PREDICATES, shapesSceneGraph } from '../lib/shapes/scene-graph.js';
import { SHAPES_MARGINS, generateShapesScenes, shapesVocabulary } from '../lib/shapes/dataset.js';
import { randomLayout, type PlacedShape, type ShapesLayout } from '../lib/shapes/world.js';

const SCENES = 400;

function scenes(seed: number, count: number): { graphs: SceneGraph[]; layouts: Map<string, ShapesLayout> } {
  const graphs: SceneGraph[] = [];
  const layouts = new Map<string, ShapesLayout>();
  for (const { graph, layout } of generateShapesScenes({ seed, count })) {
    graphs.push(graph);
    layouts.set(String(graph.image.image_id), layout);
  }
  return { graphs, layouts };
}

t.test('objects and boxes: the whole silhouette, rounded outwards, inside the image', async (t) => {
  const { graphs, layouts } = scenes(3, SCENES / 2);
  let objects = 0;
  for (const graph of graphs) {
    const layout = layouts.get(String(graph.image.image_id)) as ShapesLayout;
    if (graph.objects.length !== layout.objects.length || graph.image.width !== layout.width || graph.image.height !== layout.height)
      t.fail(`${graph.image.image_id}: graph and layout differ in objects or image size`);
    for (const [i, o] of graph.objects.entries()) {
      objects++;
      const shape = layout.objects[i] as PlacedShape;
      if (JSON.stringify([o.names, o.attributes]) !== JSON.stringify([[`${shape.colour} ${shape.kind}`], [shape.colour, shape.size]]))
        t.fail(`${graph.image.image_id}: object ${i} is named ${JSON.stringify(o.names)} with ${JSON.stringify(o.attributes)}`);
      if (![o.x, o.y, o.w, o.h].every(Number.isInteger)) t.fail(`${graph.image.image_id}: object ${i}'s box is not in whole pixels`);
      const [x, y, w, h] = shape.box;
      if (!(o.x <= x && o.y <= y && o.x + o.w >= x + w && o.y + o.h >= y + h && o.x + o.w - (x + w) < 1 && o.y + o.h - (y + h) < 1 && x - o.x < 1 && y - o.y < 1))
        t.fail(`${graph.image.image_id} ${shape.label}: box ${[o.x, o.y, o.w, o.h]} is not [${shape.box}] rounded outwards`);
      // Every silhouette vertex lies inside the box.
      for (const [u, v] of shape.outline)
        if (!(u >= o.x && u <= o.x + o.w && v >= o.y && v <= o.y + o.h)) t.fail(`${shape.label}: outline point (${u}, ${v}) outside its box`);
      if (!(o.x >= 0 && o.y >= 0 && o.x + o.w <= layout.width && o.y + o.h <= layout.height)) t.fail(`${shape.label}: box leaves the image`);
    }
    // normaliseGraph keeps every object (no duplicate merges, no degenerate boxes).
    if (normaliseGraph(graph).objects.length !== graph.objects.length) t.fail(`${graph.image.image_id}: normalisation dropped objects`);
  }
  t.ok(objects > 500, `${objects} objects checked`);
});

t.test('every relation agrees with the 3D layout, and clear pairs are related', async (t) => {
  const { graphs, layouts } = scenes(5, SCENES);
  const seen = new Map<string, number>();
  let clearPairs = 0;
  for (const graph of graphs) {
    const layout = layouts.get(String(graph.image.image_id)) as ShapesLayout;
    const obj = (id: number | string) => layout.objects[Number(id) - 1] as PlacedShape;
    const families = new Set<string>();
    for (const r of graph.relationships) {
      const s = obj(r.subject_id);
      const o = obj(r.object_id);
      seen.set(r.predicate, (seen.get(r.predicate) ?? 0) + 1);
      const cx = (p: PlacedShape) => p.box[0] + p.box[2] / 2;
      let ok: boolean;
      switch (r.predicate) {
        case 'left of':
        case 'right of': {
          const [l, rt] = r.predicate === 'left of' ? [s, o] : [o, s];
          ok = l.x < rt.x && l.xRange[0] < rt.xRange[0] && l.xRange[1] < rt.xRange[1] && cx(l) < cx(rt);
          break;
        }
        case 'in front of':
        case 'behind': {
          const [n, f] = r.predicate === 'in front of' ? [s, o] : [o, s];
          ok = n.z < f.z && n.zRange[0] < f.zRange[0] && n.zRange[1] < f.zRange[1];
          break;
        }
        case 'bigger':
        case 'smaller': {
          const [b, sm] = r.predicate === 'bigger' ? [s, o] : [o, s];
          ok = b.extent > sm.extent && b.volume > sm.volume;
          break;
        }
        default:
          ok = false;
      }
      if (!ok) t.fail(`${graph.image.image_id}: "${s.label} ${r.predicate} ${o.label}" contradicts the layout`);
      const family = Object.entries(FAMILY_PREDICATES).find(([, ps]) => ps.includes(r.predicate))?.[0];
      const key = `${Math.min(s.index, o.index)},${Math.max(s.index, o.index)},${family}`;
      if (families.has(key)) t.fail(`${graph.image.image_id}: two ${family} relations for one pair`);
      families.add(key);
    }
    // Completeness: pairs far apart in depth, or far apart across the view and in the image, are related.
    for (const a of layout.objects)
      for (const b of layout.objects) {
        if (a.index >= b.index) continue;
        const pair = `${a.index},${b.index}`;
        if (Math.abs(a.z - b.z) > 2.5) {
          clearPairs++;
          if (!families.has(`${pair},front-behind`)) t.fail(`${graph.image.image_id}: ${a.label} and ${b.label} lack a depth relation`);
        }
        if (Math.abs(a.x - b.x) > 2.5 && Math.abs(a.box[0] + a.box[2] / 2 - (b.box[0] + b.box[2] / 2)) > 30) {
          clearPairs++;
          if (!families.has(`${pair},left-right`)) t.fail(`${graph.image.image_id}: ${a.label} and ${b.label} lack a left/right relation`);
        }
        if (a.size === 'small' && b.size === 'large') {
          clearPairs++;
          if (!families.has(`${pair},size`)) t.fail(`${graph.image.image_id}: ${a.label} and ${b.label} lack a size relation`);
        }
      }
  }
  for (const p of ['left of', 'right of', 'in front of', 'behind', 'bigger', 'smaller']) t.ok((seen.get(p) ?? 0) > 100, `"${p}" occurs ${seen.get(p) ?? 0} times`);
  t.ok(clearPairs > 500, `${clearPairs} clear pairs checked for a relation`);
});

t.test('relation families are optional; graphs are deterministic', async (t) => {
  const layout = randomLayout(9);
  const only = shapesSceneGraph(layout, { imageId: 'x', relations: ['front-behind'] });
  t.ok(only.relationships.every((r) => r.predicate === 'in front of' || r.predicate === 'behind'));
  t.same(shapesSceneGraph(layout, { imageId: 'x' }), shapesSceneGraph(randomLayout(9), { imageId: 'x' }));
  t.throws(() => shapesSceneGraph(layout, { imageId: 'x', relations: ['above' as never] }), /unknown relation family "above"/);
  const a = [...generateShapesScenes({ seed: 4, count: 5 })];
  const b = [...generateShapesScenes({ seed: 4, count: 5 })];
  t.same(a, b, 'same seed, same scenes');
  t.notSame(a[0]?.graph.objects, [...generateShapesScenes({ seed: 5, count: 1 })][0]?.graph.objects, 'another seed, other scenes');
});

/** The single object with a label (pair questions are only asked about single instances). */
function one(layout: ShapesLayout, label: string): PlacedShape {
  const found = layout.objects.filter((o) => o.label === label);
  if (found.length !== 1) throw new Error(`"${label}" names ${found.length} objects`);
  return found[0] as PlacedShape;
}

/** Checks one row against the layout; returns a complaint or undefined. */
function check(row: SynthRow, layout: ShapesLayout): string | undefined {
  const q = row.question_only;
  const answer = row.answer_text_only;
  let m: RegExpMatchArray | null;
  const groundDistance = (a: PlacedShape, b: PlacedShape) => Math.hypot(a.x - b.x, a.z - b.z);
  switch (row.category) {
    case 'relation': {
      m = q.match(/^Where is the (.+) with respect to the (.+)\?$/);
      if (!m) return 'unparsed';
      const s = one(layout, m[1] as string);
      const o = one(layout, m[2] as string);
      const bearing = (p: PlacedShape) => Math.atan2(p.x, p.z);
      const ok: Record<string, boolean> = {
        'left of': s.x < o.x && bearing(s) < bearing(o),
        'right of': s.x > o.x && bearing(s) > bearing(o),
        'in front of': s.z < o.z,
        behind: s.z > o.z,
      };
      return ok[answer] === true ? undefined : `"${s.label} ${answer} ${o.label}" is false (x ${s.x} vs ${o.x}, z ${s.z} vs ${o.z})`;
    }
    case 'depth': {
      m = q.match(/^Which is closer to the camera, the (.+) or the (.+)\?$/);
      if (!m) return 'unparsed';
      const a = one(layout, m[1] as string);
      const b = one(layout, m[2] as string);
      const [near, far] = answer === a.label ? [a, b] : answer === b.label ? [b, a] : [undefined, undefined];
      if (!near || !far) return `answer "${answer}" names neither object`;
      return near.z < far.z && near.zRange[0] < far.zRange[0] ? undefined : `${near.label} (z ${near.z}) is not nearer than ${far.label} (z ${far.z})`;
    }
    case 'size': {
      // Apparent size: the silhouette's area, or its height in the image.
      const area = (o: PlacedShape) => polygonArea(o.outline);
      const tall = (o: PlacedShape) => Math.max(...o.outline.map((p) => p[1])) - Math.min(...o.outline.map((p) => p[1]));
      if ((m = q.match(/^Which appears larger in the image, the (.+) or the (.+)\?$/))) {
        const a = one(layout, m[1] as string);
        const b = one(layout, m[2] as string);
        const [big, small] = answer === a.label ? [a, b] : [b, a];
        return area(big) > area(small) ? undefined : `${big.label} does not look larger than ${small.label}`;
      }
      if ((m = q.match(/^Does the (.+) appear (larger or smaller|taller or shorter) than the (.+) in the image\?$/))) {
        const a = one(layout, m[1] as string);
        const b = one(layout, m[3] as string);
        const measure = m[2] === 'larger or smaller' ? area : tall;
        const truth = m[2] === 'larger or smaller' ? (measure(a) > measure(b) ? 'larger' : 'smaller') : measure(a) > measure(b) ? 'taller' : 'shorter';
        return answer === truth ? undefined : `${a.label} looks ${truth} than ${b.label}, not ${answer}`;
      }
      return 'unparsed';
    }
    case 'distance': {
      m = q.match(/^Which object is closer to the (.+), the (.+) or the (.+)\?$/);
      if (!m) return 'unparsed';
      const r = one(layout, m[1] as string);
      const a = one(layout, m[2] as string);
      const b = one(layout, m[3] as string);
      const [win, lose] = answer === a.label ? [a, b] : [b, a];
      return groundDistance(win, r) < groundDistance(lose, r) ? undefined : `${win.label} is not closer to ${r.label} in 3D`;
    }
    case 'orientation': {
      m = q.match(/^From the camera's viewpoint, is the (.+) to the left or to the right of the (.+)\?$/);
      if (!m) return 'unparsed';
      // As the camera sees it: by bearing from the camera (at the origin, looking along +z),
      // which perspective can order differently from x (a far object right of a near one in x
      // may still be seen to its left).
      const a = one(layout, m[1] as string);
      const b = one(layout, m[2] as string);
      const bearing = (o: PlacedShape) => Math.atan2(o.x, o.z);
      return (answer === 'to the left') === bearing(a) < bearing(b) ? undefined : `${a.label} is not seen ${answer} of ${b.label}`;
    }
    case 'count': {
      m = q.match(/^How many (.+) are there in the image\?$/);
      if (!m) return 'unparsed';
      const plural = m[1] as string;
      const n = layout.objects.filter((o) => `${o.label}s` === plural || `${o.label}es` === plural).length;
      return String(n) === answer ? undefined : `${n} ${plural}, not ${answer}`;
    }
    case 'existence': {
      m = q.match(/^Is there an? (.+) in the image\?$/);
      if (!m) return 'unparsed';
      const present = layout.objects.some((o) => o.label === m?.[1]);
      return (answer === 'yes') === present ? undefined : `"${m[1]}" present: ${present}, answer ${answer}`;
    }
    case 'instance_location': {
      m = q.match(/^In which part of the image is the (.+) located\?$/);
      if (!m) return 'unparsed';
      const o = one(layout, m[1] as string);
      const cell = gridCell(o.box[0] + o.box[2] / 2, o.box[1] + o.box[3] / 2, layout.width, layout.height);
      return cell === answer ? undefined : `${o.label} is in the ${cell} cell, not ${answer}`;
    }
    default:
      return `unexpected category ${row.category}`;
  }
}

t.test('every synthesised question agrees with the 3D truth; the required categories all occur', async (t) => {
  const { graphs, layouts } = scenes(11, SCENES);
  const stats = emptySynthStats();
  const rows: SynthRow[] = [];
  for await (const row of synthesizeRows(graphs, { seed: 2, target: 100_000, margins: SHAPES_MARGINS, absentVocabulary: shapesVocabulary() }, stats))
    rows.push(row);
  const byCategory = new Map<string, number>();
  for (const row of rows) {
    byCategory.set(row.category, (byCategory.get(row.category) ?? 0) + 1);
    const problem = check(row, layouts.get(row.image_id) as ShapesLayout);
    if (problem) t.fail(`${row.image_id} [${row.category}] ${row.question_only} -> ${row.answer_text_only}: ${problem}`);
    // The ground-truth scene names ids the reward's pattern accepts, with boxes from the graph.
    const scene = JSON.parse(/<scene>(.*)<\/scene>/s.exec(row.answer_option_text)?.[1] ?? 'null') as { objects: { id: string; bbox: number[] }[] };
    for (const o of scene.objects) if (!/^[a-zA-Z_]+\.\d+$/.test(o.id)) t.fail(`id ${o.id} does not match the reward's pattern`);
  }
  t.comment(`${rows.length} rows from ${stats.images} scenes: ${JSON.stringify(Object.fromEntries(byCategory))}`);
  for (const c of ['relation', 'depth', 'size', 'distance', 'count', 'existence', 'instance_location', 'orientation'])
    t.ok((byCategory.get(c) ?? 0) >= 20, `${c}: ${byCategory.get(c) ?? 0} rows`);
  t.equal(byCategory.get('reach') ?? 0, 0, 'no reach questions (nothing holds anything)');
  const counts = rows.filter((r) => r.category === 'count').map((r) => Number(r.answer_text_only));
  t.ok(counts.some((n) => n >= 2), `count answers include ${[...new Set(counts)].sort().join(', ')}`);
  const relationAnswers = new Set(rows.filter((r) => r.category === 'relation').map((r) => r.answer_text_only));
  t.same([...relationAnswers].sort(), ['behind', 'in front of', 'left of', 'right of'], 'relation answers use all four predicates');
});
