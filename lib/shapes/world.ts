/**
 * Seeded random layouts of the shapes world: 2-6 coloured cubes, spheres, cylinders and
 * cones standing on the ground in front of the fixed camera (camera.ts), none touching
 * another, each wholly inside the image and at least half visible, with its exact projected
 * box and silhouette (geometry.ts).
 *
 * Labels are "<colour> <kind>" and are distinct within a scene, except that with
 * `repeatChance` one label is given to 2-3 objects: the question generator asks pair
 * questions only about single-instance labels and count questions about every label, so
 * this mix yields both unambiguous pair questions and counts above one.
 *
 * Occlusion order: every solid lies inside the vertical cylinder over its footprint circle,
 * and footprint circles never meet. For two disjoint circles, the vertical plane through
 * their radical axis separates them, and the camera is on the side of the circle of smaller
 * power |c - camera|^2 - r^2 (camera taken on the ground). A solid on the camera's side of a
 * plane that separates it from another can never be hidden by it, so sorting by decreasing
 * power is a correct painter's order (far to near) with no cycles.
 */
import { makeCamera, type Camera, type CameraOptions, type Point } from './camera.js';
import {
  SHAPE_KINDS,
  footprintRadius,
  halfExtentAlongAxis,
  insideConvex,
  projectedBounds,
  silhouette,
  volume,
  type ShapeKind,
  type Solid,
  type XywhBox,
} from './geometry.js';
import { hash32, mulberry32, randomInt, shuffled, type Random } from '../random.js';

/** Simple colour words and their base RGB. */
export const SHAPE_COLOURS = {
  red: [206, 42, 42],
  blue: [42, 88, 214],
  green: [40, 158, 66],
  yellow: [232, 198, 36],
  purple: [138, 58, 182],
  orange: [242, 128, 28],
} as const satisfies Record<string, readonly [number, number, number]>;

export type ColourName = keyof typeof SHAPE_COLOURS;
export const COLOUR_NAMES = Object.keys(SHAPE_COLOURS) as ColourName[];

/** Size words and their world extents (a cube's side, a sphere's diameter, ...). */
export const SHAPE_SIZES = { small: 0.6, medium: 0.9, large: 1.3 } as const satisfies Record<string, number>;

export type SizeName = keyof typeof SHAPE_SIZES;
export const SIZE_NAMES = Object.keys(SHAPE_SIZES) as SizeName[];

/** One object to place: what it is and where it stands. */
export interface ShapeSpec {
  kind: ShapeKind;
  colour: ColourName;
  size: SizeName;
  /** Ground position: x to the right, z away from the camera. */
  x: number;
  z: number;
  /** Turn about the vertical, radians (cubes; 0 by default). */
  yaw?: number;
}

/** A placed object with everything the camera sees of it. */
export interface PlacedShape extends Solid {
  /** Position in ShapesLayout.objects. */
  index: number;
  colour: ColourName;
  size: SizeName;
  /** "<colour> <kind>". */
  label: string;
  volume: number;
  /** Radius of the footprint circle that contains the solid (the placement keeps these apart). */
  footprintRadius: number;
  /** Exact ground extents along x and z. */
  xRange: [number, number];
  zRange: [number, number];
  /** Exact projected bounding box of the whole silhouette, [x, y, w, h] in pixels (not clipped). */
  box: XywhBox;
  /** The silhouette, a convex polygon in pixels. */
  outline: Point[];
  /** Fraction of the silhouette not covered by nearer objects (estimated on a grid). */
  visibleFraction: number;
}

export interface ShapesLayout {
  width: number;
  height: number;
  camera: Camera;
  objects: PlacedShape[];
  /** Object indices from far to near: the painter's order. */
  drawOrder: number[];
}

export interface WorldOptions {
  /** Image size in pixels (default 168 x 168: a multiple of 28, so Qwen2.5-VL's smart resize keeps it). */
  width?: number;
  height?: number;
  /** Objects per scene (default 2-6). */
  minObjects?: number;
  maxObjects?: number;
  kinds?: readonly ShapeKind[];
  colours?: readonly ColourName[];
  sizes?: readonly SizeName[];
  camera?: Partial<CameraOptions>;
  /** Depths z of object centres (default [3.9, 9]). */
  depthRange?: [number, number];
  /** Least gap between footprint circles, world units (default 0.15: nothing touches). */
  minGap?: number;
  /** Least visible fraction of every object (default 0.5). */
  minVisible?: number;
  /** Chance that one label is repeated on 2-3 objects (default 0.35). */
  repeatChance?: number;
  /** Least distance of a box from the image border, pixels (default 1). */
  border?: number;
}

export const DEFAULT_WORLD = Object.freeze({
  width: 168,
  height: 168,
  minObjects: 2,
  maxObjects: 6,
  depthRange: [3.9, 9] as readonly [number, number],
  minGap: 0.15,
  minVisible: 0.5,
  repeatChance: 0.35,
  border: 1,
});

/** Resolved options, validated. */
export interface WorldConfig {
  width: number;
  height: number;
  minObjects: number;
  maxObjects: number;
  kinds: readonly ShapeKind[];
  colours: readonly ColourName[];
  sizes: readonly SizeName[];
  camera: Camera;
  depthRange: readonly [number, number];
  minGap: number;
  minVisible: number;
  repeatChance: number;
  border: number;
}

export function worldConfig(options: WorldOptions = {}): WorldConfig {
  const width = options.width ?? DEFAULT_WORLD.width;
  const height = options.height ?? DEFAULT_WORLD.height;
  const camera = makeCamera(width, height, options.camera);
  const minObjects = options.minObjects ?? DEFAULT_WORLD.minObjects;
  const maxObjects = options.maxObjects ?? Math.max(minObjects, DEFAULT_WORLD.maxObjects);
  if (!Number.isSafeInteger(minObjects) || minObjects < 1) throw new RangeError(`minObjects must be an integer >= 1, got ${String(minObjects)}`);
  if (!Number.isSafeInteger(maxObjects) || maxObjects < minObjects || maxObjects > 12)
    throw new RangeError(`maxObjects must be an integer in [minObjects, 12], got ${String(maxObjects)}`);
  const kinds = checkedList('kinds', options.kinds ?? SHAPE_KINDS, SHAPE_KINDS);
  const colours = checkedList('colours', options.colours ?? COLOUR_NAMES, COLOUR_NAMES);
  const sizes = checkedList('sizes', options.sizes ?? SIZE_NAMES, SIZE_NAMES);
  const depthRange = options.depthRange ?? DEFAULT_WORLD.depthRange;
  if (!(depthRange[0] > 0 && depthRange[1] > depthRange[0]))
    throw new RangeError(`depthRange must be [near, far] with 0 < near < far, got [${depthRange.join(', ')}]`);
  const tallest = Math.max(...sizes.map((s) => SHAPE_SIZES[s]));
  if (!(camera.elevation > tallest * 1.05))
    throw new RangeError(`camera elevation ${camera.elevation} must clear the tallest object (${tallest}) so that tops are seen from above`);
  const minGap = options.minGap ?? DEFAULT_WORLD.minGap;
  const minVisible = options.minVisible ?? DEFAULT_WORLD.minVisible;
  const repeatChance = options.repeatChance ?? DEFAULT_WORLD.repeatChance;
  const border = options.border ?? DEFAULT_WORLD.border;
  if (!(minGap >= 0)) throw new RangeError(`minGap must be >= 0, got ${String(minGap)}`);
  if (!(minVisible >= 0 && minVisible <= 1)) throw new RangeError(`minVisible must be in [0, 1], got ${String(minVisible)}`);
  if (!(repeatChance >= 0 && repeatChance <= 1)) throw new RangeError(`repeatChance must be in [0, 1], got ${String(repeatChance)}`);
  if (!(border >= 0)) throw new RangeError(`border must be >= 0, got ${String(border)}`);
  if (kinds.length * colours.length < maxObjects)
    throw new RangeError(`${kinds.length} kinds x ${colours.length} colours give too few distinct labels for ${maxObjects} objects`);
  return { width, height, minObjects, maxObjects, kinds, colours, sizes, camera, depthRange, minGap, minVisible, repeatChance, border };
}

function checkedList<T extends string>(name: string, list: readonly T[], known: readonly T[]): readonly T[] {
  if (!Array.isArray(list) || list.length === 0) throw new RangeError(`${name} must be a non-empty list`);
  for (const item of list) if (!known.includes(item)) throw new RangeError(`unknown ${name} entry "${String(item)}" (known: ${known.join(', ')})`);
  return [...new Set(list)];
}

/**
 * A layout from explicit specs (for tests and hand-made scenes). Throws a RangeError when
 * two objects' footprints come closer than minGap (they would interpenetrate or touch), or
 * when an object is not wholly inside the image.
 */
export function layoutFromSpecs(specs: readonly ShapeSpec[], options: WorldOptions = {}): ShapesLayout {
  const config = worldConfig(options);
  const layout = buildLayout(specs, config.camera);
  const problem = placementProblem(layout, config, false);
  if (problem) throw new RangeError(problem);
  return layout;
}

/** Places specs without checks: geometry, painter's order and visibility. */
function buildLayout(specs: readonly ShapeSpec[], camera: Camera): ShapesLayout {
  const objects = specs.map((spec, index) => placeShape(spec, index, camera));
  const drawOrder = paintersOrder(objects, camera);
  const rank = new Map(drawOrder.map((i, k) => [i, k]));
  for (const o of objects) {
    const nearer = objects.filter((other) => (rank.get(other.index) as number) > (rank.get(o.index) as number));
    o.visibleFraction = visibleFraction(o, nearer);
  }
  return { width: camera.width, height: camera.height, camera, objects, drawOrder };
}

function placeShape(spec: ShapeSpec, index: number, camera: Camera): PlacedShape {
  if (!SHAPE_KINDS.includes(spec.kind)) throw new RangeError(`object ${index}: unknown kind "${String(spec.kind)}"`);
  if (!(spec.colour in SHAPE_COLOURS)) throw new RangeError(`object ${index}: unknown colour "${String(spec.colour)}"`);
  if (!(spec.size in SHAPE_SIZES)) throw new RangeError(`object ${index}: unknown size "${String(spec.size)}"`);
  if (!Number.isFinite(spec.x) || !Number.isFinite(spec.z)) throw new RangeError(`object ${index}: position must be finite`);
  const solid: Solid = { kind: spec.kind, x: spec.x, z: spec.z, extent: SHAPE_SIZES[spec.size], yaw: spec.kind === 'cube' ? (spec.yaw ?? 0) : 0 };
  const near = solid.z - footprintRadius(solid);
  if (!(near > 0)) throw new RangeError(`object ${index}: it must stand in front of the camera (z - radius > 0), got z = ${spec.z}`);
  const [u0, v0, u1, v1] = projectedBounds(camera, solid);
  const hx = halfExtentAlongAxis(solid);
  return {
    ...solid,
    index,
    colour: spec.colour,
    size: spec.size,
    label: `${spec.colour} ${spec.kind}`,
    volume: volume(solid),
    footprintRadius: footprintRadius(solid),
    xRange: [solid.x - hx, solid.x + hx],
    zRange: [solid.z - hx, solid.z + hx],
    box: [u0, v0, u1 - u0, v1 - v0],
    outline: silhouette(camera, solid),
    visibleFraction: 1,
  };
}

/** Object indices far to near, by decreasing power of the camera's ground point (see the module comment). */
export function paintersOrder(objects: readonly PlacedShape[], camera: Camera): number[] {
  const power = (o: PlacedShape) => (o.x - camera.position[0]) ** 2 + (o.z - camera.position[2]) ** 2 - o.footprintRadius ** 2;
  return objects
    .map((o) => ({ i: o.index, p: power(o) }))
    .sort((a, b) => b.p - a.p || a.i - b.i)
    .map((e) => e.i);
}

/** Samples per box side when estimating visibility. */
const VISIBILITY_GRID = 16;

/** The fraction of an object's silhouette that no nearer silhouette covers (grid estimate). */
export function visibleFraction(o: PlacedShape, nearer: readonly PlacedShape[]): number {
  const [x, y, w, h] = o.box;
  // Only nearer objects whose boxes meet this one can cover it; test their boxes before their outlines.
  const covering = nearer.filter((n) => n.box[0] < x + w && n.box[0] + n.box[2] > x && n.box[1] < y + h && n.box[1] + n.box[3] > y);
  const inBox = (b: XywhBox, p: Point) => p[0] >= b[0] && p[0] <= b[0] + b[2] && p[1] >= b[1] && p[1] <= b[1] + b[3];
  let inside = 0;
  let seen = 0;
  for (let i = 0; i < VISIBILITY_GRID; i++)
    for (let j = 0; j < VISIBILITY_GRID; j++) {
      const p: Point = [x + ((i + 0.5) * w) / VISIBILITY_GRID, y + ((j + 0.5) * h) / VISIBILITY_GRID];
      if (!insideConvex(o.outline, p)) continue;
      inside++;
      if (!covering.some((n) => inBox(n.box, p) && insideConvex(n.outline, p))) seen++;
    }
  return inside === 0 ? 0 : seen / inside;
}

/** What makes a layout unacceptable, or undefined. With `strict`, visibility and same-label overlap count too. */
function placementProblem(layout: ShapesLayout, config: WorldConfig, strict: boolean): string | undefined {
  const { objects } = layout;
  for (const o of objects)
    if (!insideImage(o.box, config))
      return `object ${o.index} (${o.label}) is not wholly inside the image: box [${o.box.map((v) => v.toFixed(1)).join(', ')}]`;
  for (let i = 0; i < objects.length; i++)
    for (let j = i + 1; j < objects.length; j++) {
      const a = objects[i] as PlacedShape;
      const c = objects[j] as PlacedShape;
      const gap = footprintGap(a, c);
      if (gap < config.minGap)
        return `objects ${i} (${a.label}) and ${j} (${c.label}) are too close: footprint gap ${gap.toFixed(3)} < ${config.minGap}`;
    }
  if (!strict) return undefined;
  for (const o of objects)
    if (o.visibleFraction < config.minVisible) return `object ${o.index} is ${(100 * o.visibleFraction).toFixed(0)}% visible`;
  for (let i = 0; i < objects.length; i++)
    for (let j = i + 1; j < objects.length; j++) {
      const a = objects[i] as PlacedShape;
      const c = objects[j] as PlacedShape;
      // Same-label boxes that overlap much would be merged as duplicates by normaliseGraph.
      if (a.label === c.label && xywhIou(a.box, c.box) > 0.3) return `two ${a.label}s overlap`;
    }
  return undefined;
}

/** Whether an [x, y, w, h] box keeps `border` pixels from every edge of the image. */
function insideImage([x, y, w, h]: XywhBox, config: WorldConfig): boolean {
  const b = config.border;
  return x >= b && y >= b && x + w <= config.width - b && y + h <= config.height - b;
}

/** Distance between the footprint circles of two solids on the ground. */
function footprintGap(a: Pick<Solid, 'kind' | 'extent' | 'x' | 'z'>, b: Pick<Solid, 'kind' | 'extent' | 'x' | 'z'>): number {
  return Math.hypot(a.x - b.x, a.z - b.z) - footprintRadius(a) - footprintRadius(b);
}

function xywhIou(a: XywhBox, b: XywhBox): number {
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  const inter = w > 0 && h > 0 ? w * h : 0;
  const union = a[2] * a[3] + b[2] * b[3] - inter;
  return union > 0 ? inter / union : 0;
}

/** Tries per object before the scene is started over; scenes before giving up. */
const OBJECT_TRIES = 60;
const SCENE_TRIES = 400;

/**
 * A random layout, a pure function of (seed, options). Objects are placed one at a time at
 * uniform random depths and lateral positions inside the view, retried until they fit; a
 * scene that fails its visibility or overlap checks is drawn again from the same stream.
 */
export function randomLayout(seed: number, options: WorldOptions = {}): ShapesLayout {
  const config = worldConfig(options);
  const random = mulberry32(hash32('shapes-world', seed));
  for (let attempt = 0; attempt < SCENE_TRIES; attempt++) {
    const layout = tryLayout(random, config);
    if (layout) return layout;
  }
  throw new RangeError(`no valid layout after ${SCENE_TRIES} tries for seed ${seed}: the options leave too little room`);
}

function tryLayout(random: Random, config: WorldConfig): ShapesLayout | undefined {
  const count = config.minObjects + randomInt(random, config.maxObjects - config.minObjects + 1);
  const labels = chooseLabels(random, config, count);
  const { camera } = config;
  const [zNear, zFar] = config.depthRange;
  const specs: ShapeSpec[] = [];
  const placed: PlacedShape[] = [];
  for (const [kind, colour] of labels) {
    const size = config.sizes[randomInt(random, config.sizes.length)] as SizeName;
    const yaw = kind === 'cube' ? random() * (Math.PI / 2) : 0;
    let done = false;
    for (let t = 0; t < OBJECT_TRIES && !done; t++) {
      const z = zNear + random() * (zFar - zNear);
      // Half the width of the view at this depth on the ground, less the object's radius.
      const depth = camera.elevation * camera.sinPitch + z * camera.cosPitch;
      const half = (depth * camera.width) / 2 / camera.focal - SHAPE_SIZES[size] / 2;
      if (!(half > 0)) continue;
      const x = (2 * random() - 1) * half;
      // The cheap tests first: footprints apart, then the box inside the image.
      const solid: Solid = { kind, x, z, extent: SHAPE_SIZES[size], yaw };
      if (placed.some((p) => footprintGap(p, solid) < config.minGap)) continue;
      const [u0, v0, u1, v1] = projectedBounds(camera, solid);
      if (!insideImage([u0, v0, u1 - u0, v1 - v0], config)) continue;
      const spec: ShapeSpec = { kind, colour, size, x, z, ...(kind === 'cube' ? { yaw } : {}) };
      specs.push(spec);
      placed.push(placeShape(spec, placed.length, camera));
      done = true;
    }
    if (!done) return undefined;
  }
  const layout = buildLayout(specs, camera);
  return placementProblem(layout, config, true) ? undefined : layout;
}

/** `count` (kind, colour) pairs: distinct, or with one pair repeated 2-3 times (repeatChance). */
function chooseLabels(random: Random, config: WorldConfig, count: number): [ShapeKind, ColourName][] {
  const all: [ShapeKind, ColourName][] = [];
  for (const kind of config.kinds) for (const colour of config.colours) all.push([kind, colour]);
  const distinct = shuffled(all, random);
  if (count < 2 || random() >= config.repeatChance) return distinct.slice(0, count);
  const copies = Math.min(count, 2 + randomInt(random, 2));
  const repeated = distinct[0] as [ShapeKind, ColourName];
  const out = [...Array.from({ length: copies }, () => repeated), ...distinct.slice(1, 1 + count - copies)];
  return shuffled(out, random);
}
