/**
 * The shapes world against its own geometry: the camera projects as a pinhole should, the
 * exact boxes contain (tightly) the projections of densely sampled surface points, layouts
 * are valid, farther objects are smaller and higher, the renderer's pixels show each object
 * in its colour where the geometry says it is visible (so nearer objects cover farther
 * ones), and everything is deterministic for a seed.
 */
import t from 'tap';
import sharp from 'sharp';
import {
  groundDepthAtRow,
  horizonRow,
  makeCamera,
  project,
  type Point,
  type Vec3,
} from '../lib/shapes/camera.js';
import { insideConvex } from '../lib/shapes/geometry.js';
import { renderShapesPng, shapesSvg } from '../lib/shapes/render.js';
import {
  SHAPE_COLOURS,
  layoutFromSpecs,
  randomLayout,
  worldConfig,
  type PlacedShape,
  type ShapeSpec,
  type ShapesLayout,
} from '../lib/shapes/world.js';

/** Surface points of a placed solid, sampled densely and independently of geometry.ts. */
function surfaceSamples(o: PlacedShape): Vec3[] {
  const out: Vec3[] = [];
  const r = o.extent / 2;
  const ring = (y: number, radius: number, n: number) => {
    for (let k = 0; k < n; k++) {
      const a = (2 * Math.PI * k) / n;
      out.push([o.x + radius * Math.cos(a), y, o.z + radius * Math.sin(a)]);
    }
  };
  switch (o.kind) {
    case 'cube': {
      const c = Math.cos(o.yaw);
      const s = Math.sin(o.yaw);
      for (const dx of [-r, r]) for (const dz of [-r, r]) for (const y of [0, o.extent]) out.push([o.x + dx * c - dz * s, y, o.z + dx * s + dz * c]);
      break;
    }
    case 'sphere':
      for (let i = 0; i <= 100; i++) {
        const polar = (Math.PI * i) / 100;
        ring(r - r * Math.cos(polar), r * Math.sin(polar), 200);
      }
      break;
    case 'cylinder':
      ring(0, r, 2000);
      ring(o.extent, r, 2000);
      break;
    case 'cone':
      ring(0, r, 2000);
      out.push([o.x, o.extent, o.z]);
      break;
  }
  return out;
}

function boxEdges(o: PlacedShape): [number, number, number, number] {
  const [x, y, w, h] = o.box;
  return [x, y, x + w, y + h];
}

t.test('the camera is a pinhole looking down the z axis, pitched down', async (t) => {
  const c = makeCamera(168, 168, { elevation: 5, pitchDeg: 32, fovDeg: 48 });
  // The optical axis meets the ground at depth elevation / tan(pitch): the image centre.
  const zAxis = 5 / Math.tan((32 * Math.PI) / 180);
  const [u, v] = project(c, [0, 0, zAxis]);
  t.ok(Math.abs(u - 84) < 1e-9 && Math.abs(v - 84) < 1e-9, `axis point at (${u}, ${v})`);
  // The focal length puts the edge of the horizontal field of view at the image border.
  const q: Vec3 = [Math.tan((24 * Math.PI) / 180), 0, 1]; // camera axes: right, up, forward
  t.ok(Math.abs(84 + c.focal * q[0] - 168) < 1e-9, 'half the fov spans half the width');
  // A ground point's row depends only on its depth, and farther is higher.
  let previous = Infinity;
  for (let z = 3; z <= 20; z += 0.5) {
    const rows = [-3, 0, 2.5].map((x) => project(c, [x, 0, z])[1]);
    t.ok(Math.max(...rows) - Math.min(...rows) < 1e-9, `row at depth ${z} does not depend on x`);
    t.ok((rows[0] as number) < previous, `depth ${z} is higher in the image`);
    previous = rows[0] as number;
    t.ok(Math.abs(groundDepthAtRow(c, rows[0] as number) - z) < 1e-9, 'groundDepthAtRow inverts the projection');
  }
  t.ok(horizonRow(makeCamera(168, 168, { pitchDeg: 10 })) > 0, 'a shallow camera sees the horizon');
  t.throws(() => project(c, [0, 5, -1]), /not in front of the camera/);
});

t.test('exact boxes contain the projected surface and touch it on all four sides', async (t) => {
  let checked = 0;
  for (let seed = 0; seed < 80; seed++) {
    const layout = randomLayout(seed);
    for (const o of layout.objects) {
      const [x0, y0, x1, y1] = boxEdges(o);
      let minU = Infinity;
      let minV = Infinity;
      let maxU = -Infinity;
      let maxV = -Infinity;
      for (const p of surfaceSamples(o)) {
        const [u, v] = project(layout.camera, p);
        minU = Math.min(minU, u);
        maxU = Math.max(maxU, u);
        minV = Math.min(minV, v);
        maxV = Math.max(maxV, v);
      }
      const eps = 1e-6;
      if (!(minU >= x0 - eps && maxU <= x1 + eps && minV >= y0 - eps && maxV <= y1 + eps))
        t.fail(`seed ${seed} ${o.label}: samples [${minU}, ${minV}, ${maxU}, ${maxV}] leave box [${x0}, ${y0}, ${x1}, ${y1}]`);
      // Tight: the densest sampling comes within 0.05 px of every side.
      const slack = Math.max(minU - x0, x1 - maxU, minV - y0, y1 - maxV);
      if (!(slack < 0.05)) t.fail(`seed ${seed} ${o.label} (${o.kind}): box is ${slack.toFixed(3)} px loose`);
      if (!(x0 >= 0 && y0 >= 0 && x1 <= layout.width && y1 <= layout.height)) t.fail(`seed ${seed} ${o.label}: box leaves the image`);
      checked++;
    }
  }
  t.ok(checked > 250, `${checked} objects checked`);
});

t.test('random layouts obey their options', async (t) => {
  const config = worldConfig();
  const counts = new Set<number>();
  let repeated = 0;
  for (let seed = 0; seed < 200; seed++) {
    const layout = randomLayout(seed);
    const n = layout.objects.length;
    counts.add(n);
    t.ok(n >= config.minObjects && n <= config.maxObjects, `seed ${seed}: ${n} objects`);
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++) {
        const a = layout.objects[i] as PlacedShape;
        const b = layout.objects[j] as PlacedShape;
        const gap = Math.hypot(a.x - b.x, a.z - b.z) - a.footprintRadius - b.footprintRadius;
        if (!(gap >= config.minGap)) t.fail(`seed ${seed}: objects ${i} and ${j} interpenetrate (gap ${gap})`);
      }
    for (const o of layout.objects) if (!(o.visibleFraction >= config.minVisible)) t.fail(`seed ${seed}: ${o.label} is ${o.visibleFraction} visible`);
    const byLabel = new Map<string, number>();
    for (const o of layout.objects) byLabel.set(o.label, (byLabel.get(o.label) ?? 0) + 1);
    const multi = [...byLabel.values()].filter((k) => k > 1);
    t.ok(multi.length <= 1 && multi.every((k) => k <= 3), `seed ${seed}: at most one label repeated, at most 3 times`);
    if (multi.length === 1) repeated++;
    t.same([...layout.drawOrder].sort((a, b) => a - b), layout.objects.map((o) => o.index), 'the draw order is a permutation');
  }
  t.same([...counts].sort(), [2, 3, 4, 5, 6], 'every object count from 2 to 6 occurs');
  t.ok(repeated > 20 && repeated < 120, `${repeated} of 200 scenes repeat a label`);
});

t.test('bad options and impossible scenes are refused with a reason', async (t) => {
  t.throws(() => worldConfig({ width: 0 }), /width must be an integer/);
  t.throws(() => worldConfig({ colours: ['red', 'teal' as never] }), /unknown colours entry "teal"/);
  t.throws(() => worldConfig({ kinds: [] }), /kinds must be a non-empty list/);
  t.throws(() => worldConfig({ kinds: ['cube'], colours: ['red'], maxObjects: 3 }), /too few distinct labels/);
  t.throws(() => worldConfig({ camera: { elevation: 1 } }), /must clear the tallest object/);
  t.throws(() => worldConfig({ depthRange: [5, 4] }), /depthRange/);
  t.throws(
    () =>
      layoutFromSpecs([
        { kind: 'cube', colour: 'red', size: 'large', x: 0, z: 6 },
        { kind: 'sphere', colour: 'blue', size: 'large', x: 0.5, z: 6.2 },
      ]),
    /objects 0 \(red cube\) and 1 \(blue sphere\) are too close/,
  );
  t.throws(() => layoutFromSpecs([{ kind: 'cone', colour: 'red', size: 'small', x: 9, z: 5 }]), /not wholly inside the image/);
  // Six large objects cannot stand side by side in the 4-unit-wide strip of ground at depth 4.
  t.throws(() => randomLayout(1, { minObjects: 6, sizes: ['large'], depthRange: [3.9, 4] }), /no valid layout after 400 tries for seed 1/);
});

t.test('farther objects are drawn smaller and higher', async (t) => {
  for (const kind of ['cube', 'sphere', 'cylinder', 'cone'] as const) {
    let previous: PlacedShape | undefined;
    for (let z = 4; z <= 9; z += 0.5) {
      const [o] = layoutFromSpecs([{ kind, colour: 'green', size: 'medium', x: 0.2, z }]).objects as [PlacedShape];
      if (previous) {
        t.ok(o.box[2] < previous.box[2] && o.box[3] < previous.box[3], `${kind} at z=${z} is smaller`);
        t.ok(o.box[1] + o.box[3] < previous.box[1] + previous.box[3] && o.box[1] < previous.box[1], `${kind} at z=${z} is higher`);
      }
      previous = o;
    }
  }
  // Across random scenes: of two round objects of the same kind and size (a cube's box also
  // depends on its turn), the farther is smaller and its bottom higher.
  let pairs = 0;
  for (let seed = 0; seed < 300; seed++) {
    const { objects } = randomLayout(seed);
    for (const a of objects)
      for (const b of objects) {
        if (a.kind === 'cube' || a.kind !== b.kind || a.size !== b.size || !(a.z < b.z - 0.2)) continue;
        pairs++;
        if (!(b.box[3] < a.box[3] && b.box[1] + b.box[3] < a.box[1] + a.box[3])) t.fail(`seed ${seed}: farther ${b.label} is not smaller and higher`);
      }
  }
  t.ok(pairs > 40, `${pairs} same-kind, same-size pairs compared`);
});

async function pixels(layout: ShapesLayout): Promise<{ data: Buffer; channels: number }> {
  const { data, info } = await sharp(await renderShapesPng(layout)).raw().toBuffer({ resolveWithObject: true });
  return { data, channels: info.channels };
}

function hue([r, g, b]: readonly number[]): number {
  const max = Math.max(r as number, g as number, b as number);
  const min = Math.min(r as number, g as number, b as number);
  const d = max - min;
  if (d === 0) return 0;
  let h: number;
  if (max === r) h = (((g as number) - (b as number)) / d) % 6;
  else if (max === g) h = ((b as number) - (r as number)) / d + 2;
  else h = ((r as number) - (g as number)) / d + 4;
  return (h * 60 + 360) % 360;
}

function hueDistance(a: number, b: number): number {
  const d = Math.abs(a - b) % 360;
  return Math.min(d, 360 - d);
}

/** Distance from p to the nearest edge of a polygon. */
function edgeDistance(polygon: readonly Point[], p: Point): number {
  let best = Infinity;
  for (let i = 0; i < polygon.length; i++) {
    const a = polygon[i] as Point;
    const b = polygon[(i + 1) % polygon.length] as Point;
    const abx = b[0] - a[0];
    const aby = b[1] - a[1];
    const len2 = abx * abx + aby * aby;
    const s = len2 === 0 ? 0 : Math.max(0, Math.min(1, ((p[0] - a[0]) * abx + (p[1] - a[1]) * aby) / len2));
    best = Math.min(best, Math.hypot(p[0] - a[0] - s * abx, p[1] - a[1] - s * aby));
  }
  return best;
}

/** The colour whose hue a pixel shows, at pixel centres well inside `o` (2 px from every silhouette edge). */
function interiorPixels(layout: ShapesLayout, o: PlacedShape, covering: readonly PlacedShape[]): Point[] {
  const out: Point[] = [];
  const [x, y, w, h] = o.box;
  for (let j = Math.floor(y); j < y + h; j++)
    for (let i = Math.floor(x); i < x + w; i++) {
      const p: Point = [i + 0.5, j + 0.5];
      if (!insideConvex(o.outline, p) || edgeDistance(o.outline, p) < 2) continue;
      if (covering.some((c) => insideConvex(c.outline, p) || edgeDistance(c.outline, p) < 2)) continue;
      out.push(p);
    }
  return out;
}

t.test('nearer objects cover farther ones where their silhouettes overlap', async (t) => {
  const near: ShapeSpec = { kind: 'sphere', colour: 'blue', size: 'large', x: 0, z: 4.6 };
  const far: ShapeSpec = { kind: 'cube', colour: 'red', size: 'large', x: 0.5, z: 6.4, yaw: 0.3 };
  for (const [front, back] of [
    [near, far],
    [
      { ...near, colour: 'red', kind: 'cube', yaw: 0.3 },
      { ...far, colour: 'blue', kind: 'sphere' },
    ],
  ] as [ShapeSpec, ShapeSpec][]) {
    // Listed far first and near first: the painter's order, not the list order, decides.
    for (const specs of [
      [front, back],
      [back, front],
    ]) {
      const layout = layoutFromSpecs(specs);
      const f = layout.objects.find((o) => o.z === front.z) as PlacedShape;
      const b = layout.objects.find((o) => o.z === back.z) as PlacedShape;
      t.same(layout.drawOrder, [b.index, f.index], 'drawn far to near');
      // Pixels inside both silhouettes, away from their edges.
      const both = interiorPixels(layout, f, []).filter((p) => insideConvex(b.outline, p) && edgeDistance(b.outline, p) >= 2);
      t.ok(both.length > 20, `${both.length} pixels where the two overlap`);
      const { data, channels } = await pixels(layout);
      const want = hue(SHAPE_COLOURS[f.colour]);
      for (const [u, v] of both) {
        const k = (Math.floor(v) * layout.width + Math.floor(u)) * channels;
        const rgb = [data[k], data[k + 1], data[k + 2]] as number[];
        if (hueDistance(hue(rgb), want) > 12) {
          t.fail(`pixel (${u}, ${v}) is ${rgb.join(',')}, not the nearer ${f.label}`);
          break;
        }
      }
      t.ok(b.visibleFraction < 1, `the farther ${b.label} is partly hidden (${b.visibleFraction.toFixed(2)} visible)`);
    }
  }
});

t.test('rendered pixels show each object in its colour wherever the geometry says it is visible', async (t) => {
  let checked = 0;
  for (let seed = 0; seed < 25; seed++) {
    const layout = randomLayout(seed);
    const { data, channels } = await pixels(layout);
    t.equal(channels, 3, 'RGB');
    const rank = new Map(layout.drawOrder.map((i, k) => [i, k]));
    for (const o of layout.objects) {
      const nearer = layout.objects.filter((c) => (rank.get(c.index) as number) > (rank.get(o.index) as number));
      const want = hue(SHAPE_COLOURS[o.colour]);
      let wrong = 0;
      const inside = interiorPixels(layout, o, nearer);
      for (const [u, v] of inside) {
        const k = (Math.floor(v) * layout.width + Math.floor(u)) * channels;
        if (hueDistance(hue([data[k] as number, data[k + 1] as number, data[k + 2] as number]), want) > 12) wrong++;
      }
      if (wrong > 0) t.fail(`seed ${seed}: ${wrong} of ${inside.length} visible pixels of the ${o.label} show another hue`);
      checked += inside.length;
    }
  }
  t.ok(checked > 5000, `${checked} pixels checked`);
});

t.test('same seed, same layout, SVG and PNG bytes; another seed, another image', async (t) => {
  const a = randomLayout(42);
  const b = randomLayout(42);
  t.same(a, b, 'layout');
  t.equal(shapesSvg(a), shapesSvg(b), 'svg');
  const [pa, pb, pc] = await Promise.all([renderShapesPng(a), renderShapesPng(b), renderShapesPng(randomLayout(43))]);
  t.ok(pa.equals(pb), 'png bytes');
  t.notOk(pa.equals(pc), 'another seed draws another image');
  const meta = await sharp(pa).metadata();
  t.same([meta.format, meta.width, meta.height, meta.channels], ['png', 168, 168, 3], '168 x 168 RGB PNG');
  const small = await sharp(await renderShapesPng(randomLayout(42, { width: 160, height: 120 }))).metadata();
  t.same([small.width, small.height], [160, 120], 'the size is an option');
});

t.test('rendering is fast', async (t) => {
  const layouts = Array.from({ length: 40 }, (_, i) => randomLayout(1000 + i));
  const started = performance.now();
  for (const layout of layouts) await renderShapesPng(layout);
  const ms = (performance.now() - started) / layouts.length;
  t.comment(`${ms.toFixed(1)} ms per 168 x 168 image (one at a time)`);
  t.ok(ms < 100, `${ms.toFixed(1)} ms per image`);
});
