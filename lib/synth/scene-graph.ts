/**
 * Scene graphs in Visual Genome form, their loaders, and the normalised graph the question
 * generator reads.
 *
 * Three sources produce a `SceneGraph`:
 * - Visual Genome's `scene_graphs.json` joined with `image_data.json`, both streamed
 *   (`readVisualGenome`): the scene-graph file is several GB and is never parsed whole;
 * - rows of the VG150 conversion (`JosephZ/vg150_train_sgg_prompt`, method.md §4.1) whose
 *   `objects` / `relationships` columns are JSON strings (`fromVg150Row`);
 * - plain in-memory graphs (the synthetic shapes world builds these directly).
 */
import { createReadStream } from 'node:fs';
import streamArray from 'stream-json/streamers/stream-array.js';
import { normalisePredicate } from './predicates.js';

/** A Visual Genome object: a box at (x, y) of size w x h pixels and one or more names. */
export interface SceneObject {
  object_id: number | string;
  /** Visual Genome names; the first is the label. */
  names?: readonly string[];
  /** Single-name form (Visual Genome relationship endpoints, older dumps). */
  name?: string;
  x: number;
  y: number;
  w: number;
  h: number;
  attributes?: readonly string[];
}

export interface SceneRelationship {
  subject_id: number | string;
  object_id: number | string;
  predicate: string;
}

export interface SceneImage {
  image_id: number | string;
  width: number;
  height: number;
  /** The image file, relative to an images directory (e.g. `VG_100K/1.jpg`). */
  file?: string;
  url?: string;
}

export interface SceneGraph {
  image: SceneImage;
  objects: readonly SceneObject[];
  relationships: readonly SceneRelationship[];
}

export type PixelBox = [number, number, number, number];

/** An object after normalisation: a clean label and an [x1, y1, x2, y2] box inside the image. */
export interface GraphObject {
  /** Position in NormalisedGraph.objects. */
  index: number;
  sourceId: string;
  /** Lower-case ASCII words separated by single spaces, e.g. `traffic light`. */
  label: string;
  box: PixelBox;
  area: number;
  attributes: readonly string[];
}

export interface GraphRelation {
  subject: number;
  object: number;
  /** Normalised: lower-case, single spaces. */
  predicate: string;
}

export interface NormalisedGraph {
  imageId: string;
  width: number;
  height: number;
  file?: string;
  objects: readonly GraphObject[];
  relations: readonly GraphRelation[];
  /** Label -> its objects, in graph order. */
  byLabel: ReadonlyMap<string, readonly GraphObject[]>;
}

/** What normalisation removed, by reason. */
export interface NormaliseIssues {
  unnamed: number;
  degenerateBox: number;
  duplicateObject: number;
  danglingRelation: number;
  duplicateRelation: number;
}

/** Objects with the same label whose boxes overlap at least this much (IoU) are one object. */
export const DUPLICATE_IOU = 0.9;

/**
 * A label from a Visual Genome name: accents dropped, lower-case, every run of
 * non-letters one space, trimmed. Ids are built from it (`traffic_light.1`), so only
 * letters and spaces may remain. Empty when nothing is left.
 */
export function normaliseLabel(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z]+/g, ' ')
    .trim();
}

export function boxArea(b: PixelBox): number {
  return Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);
}

export function intersectionArea(a: PixelBox, b: PixelBox): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  return w > 0 && h > 0 ? w * h : 0;
}

export function iou(a: PixelBox, b: PixelBox): number {
  const inter = intersectionArea(a, b);
  const union = boxArea(a) + boxArea(b) - inter;
  return union > 0 ? inter / union : 0;
}

export function centre(b: PixelBox): [number, number] {
  return [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
}

/** Gap between two boxes (0 when they touch or overlap). */
export function boxGap(a: PixelBox, b: PixelBox): number {
  const dx = Math.max(0, Math.max(a[0], b[0]) - Math.min(a[2], b[2]));
  const dy = Math.max(0, Math.max(a[1], b[1]) - Math.min(a[3], b[3]));
  return Math.hypot(dx, dy);
}

function objectName(o: SceneObject): string {
  const first = o.names?.[0];
  return typeof first === 'string' ? first : typeof o.name === 'string' ? o.name : '';
}

/** A positive integer image side, or undefined. */
function imageSide(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) && n >= 1 ? Math.round(n) : undefined;
}

/**
 * The graph the generator reads: labels normalised, boxes clipped to the image, objects
 * without a name or area dropped, same-label near-duplicates (IoU >= 0.9, a common Visual
 * Genome artefact) merged, relations deduplicated and re-pointed, self-relations and
 * relations to dropped objects removed. Throws RangeError for a bad image size.
 */
export function normaliseGraph(graph: SceneGraph, issues?: NormaliseIssues): NormalisedGraph {
  const width = imageSide(graph.image.width);
  const height = imageSide(graph.image.height);
  if (width === undefined || height === undefined)
    throw new RangeError(`image ${String(graph.image.image_id)}: size ${String(graph.image.width)} x ${String(graph.image.height)} is not positive`);
  const counts = issues ?? { unnamed: 0, degenerateBox: 0, duplicateObject: 0, danglingRelation: 0, duplicateRelation: 0 };
  const objects: GraphObject[] = [];
  const bySource = new Map<string, number>();
  const byLabel = new Map<string, GraphObject[]>();
  for (const o of graph.objects) {
    const sourceId = String(o.object_id);
    const label = normaliseLabel(objectName(o));
    if (label === '') {
      counts.unnamed++;
      continue;
    }
    const x = Number(o.x);
    const y = Number(o.y);
    const w = Number(o.w);
    const h = Number(o.h);
    const box: PixelBox = [clip(x, width), clip(y, height), clip(x + w, width), clip(y + h, height)];
    const area = boxArea(box);
    if (![x, y, w, h].every(Number.isFinite) || !(box[2] > box[0] && box[3] > box[1]) || area <= 0) {
      counts.degenerateBox++;
      continue;
    }
    if (bySource.has(sourceId)) continue; // the same object listed twice
    const same = byLabel.get(label);
    const duplicate = same?.find((other) => iou(other.box, box) >= DUPLICATE_IOU);
    if (duplicate) {
      counts.duplicateObject++;
      bySource.set(sourceId, duplicate.index);
      continue;
    }
    const attributes = Array.isArray(o.attributes) ? o.attributes.filter((a): a is string => typeof a === 'string') : [];
    const object: GraphObject = { index: objects.length, sourceId, label, box, area, attributes };
    objects.push(object);
    bySource.set(sourceId, object.index);
    if (same) same.push(object);
    else byLabel.set(label, [object]);
  }
  const relations: GraphRelation[] = [];
  const seen = new Set<string>();
  for (const r of graph.relationships) {
    const subject = bySource.get(String(r.subject_id));
    const object = bySource.get(String(r.object_id));
    const predicate = typeof r.predicate === 'string' ? normalisePredicate(r.predicate) : '';
    if (subject === undefined || object === undefined || subject === object || predicate === '') {
      counts.danglingRelation++;
      continue;
    }
    const key = `${subject}\u0000${object}\u0000${predicate}`;
    if (seen.has(key)) {
      counts.duplicateRelation++;
      continue;
    }
    seen.add(key);
    relations.push({ subject, object, predicate });
  }
  const file = graph.image.file;
  return {
    imageId: String(graph.image.image_id),
    width,
    height,
    ...(file !== undefined ? { file } : {}),
    objects,
    relations,
    byLabel,
  };
}

function clip(v: number, max: number): number {
  return Math.min(Math.max(v, 0), max);
}

// ---------------------------------------------------------------------------------------
// Visual Genome

interface VgEndpoint {
  object_id?: number | string;
  names?: string[];
  name?: string;
  x?: number;
  y?: number;
  w?: number;
  h?: number;
}

interface VgSceneGraphEntry {
  image_id?: number | string;
  image?: { image_id?: number | string };
  objects?: (SceneObject & { id?: number | string; merged_object_ids?: (number | string)[] })[];
  relationships?: {
    predicate?: string;
    subject_id?: number | string;
    object_id?: number | string;
    subject?: VgEndpoint;
    object?: VgEndpoint;
  }[];
}

interface VgImageEntry {
  image_id?: number | string;
  id?: number | string;
  width?: number;
  height?: number;
  url?: string;
}

/** A JSON file that could not be read or parsed as a top-level array. */
export class JsonStreamError extends Error {
  override name = 'JsonStreamError';
  constructor(
    readonly path: string,
    readonly index: number,
    cause: unknown,
  ) {
    super(`${path}: ${cause instanceof Error ? cause.message : String(cause)} (after ${index} array elements)`);
  }
}

/** Elements of a top-level JSON array, streamed (stream-json's StreamArray); never the whole file at once. */
export async function* streamJsonArray<T>(path: string): AsyncGenerator<T> {
  const input = createReadStream(path, { highWaterMark: 1 << 20 });
  const pipeline = input.pipe(streamArray.withParserAsStream({ streamValues: false }));
  input.on('error', (error) => pipeline.destroy(error));
  let index = 0;
  try {
    const items = (pipeline as AsyncIterable<{ key: number; value: T }>)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<{ key: number; value: T }>;
      try {
        next = await items.next();
      } catch (error) {
        throw new JsonStreamError(path, index, error);
      }
      if (next.done) return;
      index++;
      yield next.value.value;
    }
  } finally {
    input.destroy();
    pipeline.destroy();
  }
}

/** The image file of a Visual Genome url, relative to the images root: `VG_100K_2/1.jpg`. */
export function vgImageFile(url: string | undefined, imageId: string): string {
  if (url) {
    const parts = url.split(/[?#]/)[0]?.split('/').filter((p) => p !== '') ?? [];
    if (parts.length >= 2) return `${parts[parts.length - 2]}/${parts[parts.length - 1]}`;
    if (parts.length === 1) return parts[0] as string;
  }
  return `${imageId}.jpg`;
}

export interface ReadVisualGenomeOptions {
  /** Called for a scene graph whose image is not in image_data.json (it is skipped). */
  onMissingImage?: (imageId: string) => void;
}

/**
 * Visual Genome scene graphs with their image sizes: `image_data.json` is streamed into a
 * map first (about 108K small records), then `scene_graphs.json` is streamed one image at a
 * time. Relationship endpoints absent from the image's object list are added to it.
 */
export async function* readVisualGenome(
  sceneGraphsPath: string,
  imageDataPath: string,
  options: ReadVisualGenomeOptions = {},
): AsyncGenerator<SceneGraph> {
  const images = new Map<string, { width: number; height: number; url?: string }>();
  for await (const entry of streamJsonArray<VgImageEntry>(imageDataPath)) {
    const id = entry.image_id ?? entry.id;
    if (id === undefined || typeof entry.width !== 'number' || typeof entry.height !== 'number') continue;
    images.set(String(id), { width: entry.width, height: entry.height, ...(entry.url ? { url: entry.url } : {}) });
  }
  for await (const entry of streamJsonArray<VgSceneGraphEntry>(sceneGraphsPath)) {
    const graph = fromVisualGenomeEntry(entry, images);
    if (graph === undefined) {
      options.onMissingImage?.(String(entry.image_id ?? entry.image?.image_id ?? '?'));
      continue;
    }
    yield graph;
  }
}

/** One `scene_graphs.json` entry as a SceneGraph, or undefined when its image size is unknown. */
export function fromVisualGenomeEntry(
  entry: VgSceneGraphEntry,
  images: ReadonlyMap<string, { width: number; height: number; url?: string }>,
): SceneGraph | undefined {
  const imageId = String(entry.image_id ?? entry.image?.image_id ?? '');
  const info = images.get(imageId);
  if (imageId === '' || !info) return undefined;
  const objects: SceneObject[] = [];
  const known = new Set<string>();
  // Visual Genome merged duplicate objects into one; relations may still name a merged id.
  const alias = new Map<string, string>();
  for (const o of entry.objects ?? []) {
    const id = o.object_id ?? o.id;
    if (id === undefined) continue;
    const { merged_object_ids: merged, id: _ignored, ...rest } = o;
    objects.push({ ...rest, object_id: id });
    known.add(String(id));
    if (Array.isArray(merged)) for (const m of merged) if (!alias.has(String(m))) alias.set(String(m), String(id));
  }
  const relationships: SceneRelationship[] = [];
  const endpoint = (id: number | string | undefined, nested: VgEndpoint | undefined): string | undefined => {
    const resolved = id ?? nested?.object_id;
    if (resolved === undefined) return undefined;
    const given = String(resolved);
    const key = known.has(given) ? given : (alias.get(given) ?? given);
    if (!known.has(key) && nested && typeof nested.x === 'number') {
      objects.push({
        object_id: resolved,
        ...(nested.names ? { names: nested.names } : {}),
        ...(nested.name !== undefined ? { name: nested.name } : {}),
        x: nested.x,
        y: nested.y ?? 0,
        w: nested.w ?? 0,
        h: nested.h ?? 0,
      });
      known.add(key);
    }
    return key;
  };
  for (const r of entry.relationships ?? []) {
    const subject = endpoint(r.subject_id, r.subject);
    const object = endpoint(r.object_id, r.object);
    if (subject === undefined || object === undefined || typeof r.predicate !== 'string') continue;
    relationships.push({ subject_id: subject, object_id: object, predicate: r.predicate });
  }
  return {
    image: {
      image_id: imageId,
      width: info.width,
      height: info.height,
      file: vgImageFile(info.url, imageId),
      ...(info.url ? { url: info.url } : {}),
    },
    objects,
    relationships,
  };
}

// ---------------------------------------------------------------------------------------
// VG150 conversion rows

export interface Vg150Row {
  image_id: number | string;
  /** JSON string (or the parsed list) of `{id: "man.1", bbox: [x1, y1, x2, y2]}`. */
  objects: string | readonly { id: string; bbox: readonly number[] }[];
  /** JSON string (or the parsed list) of `{id?, subject: "man.1", predicate, object: "bike.1"}`. */
  relationships: string | readonly { id?: unknown; subject: string; predicate: string; object: string }[];
  width?: number;
  height?: number;
  image_size?: readonly number[];
  [key: string]: unknown;
}

export class Vg150RowError extends Error {
  override name = 'Vg150RowError';
}

function parseColumn(value: unknown, column: string): unknown[] {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      throw new Vg150RowError(`"${column}" is not valid JSON: ${(error as Error).message}`);
    }
  }
  if (!Array.isArray(parsed)) throw new Vg150RowError(`"${column}" is not a list`);
  return parsed;
}

/**
 * A VG150 row as a SceneGraph. Object ids (`man.1`) become labels up to the first dot;
 * the image size comes from `size`, else the row's `width`/`height` or `image_size`
 * ([w, h]); it is required. Throws Vg150RowError on malformed columns.
 */
export function fromVg150Row(row: Vg150Row, size?: { width: number; height: number }, file?: string): SceneGraph {
  const width = size?.width ?? row.width ?? row.image_size?.[0];
  const height = size?.height ?? row.height ?? row.image_size?.[1];
  if (typeof width !== 'number' || typeof height !== 'number')
    throw new Vg150RowError(`image ${String(row.image_id)}: no image size (give width/height or image_size)`);
  const objects: SceneObject[] = [];
  for (const [i, o] of parseColumn(row.objects, 'objects').entries()) {
    if (typeof o !== 'object' || o === null) throw new Vg150RowError(`objects[${i}] is not an object`);
    const { id, bbox } = o as { id?: unknown; bbox?: unknown };
    if (typeof id !== 'string') throw new Vg150RowError(`objects[${i}] has no string "id"`);
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === 'number'))
      throw new Vg150RowError(`objects[${i}] ("${id}") has no "bbox" of 4 numbers`);
    const [x1, y1, x2, y2] = bbox as [number, number, number, number];
    const dot = id.indexOf('.');
    objects.push({ object_id: id, name: dot < 0 ? id : id.slice(0, dot), x: x1, y: y1, w: x2 - x1, h: y2 - y1 });
  }
  const relationships: SceneRelationship[] = [];
  for (const [i, r] of parseColumn(row.relationships, 'relationships').entries()) {
    if (typeof r !== 'object' || r === null) throw new Vg150RowError(`relationships[${i}] is not an object`);
    const { subject, predicate, object } = r as { subject?: unknown; predicate?: unknown; object?: unknown };
    if (typeof subject !== 'string' || typeof object !== 'string' || typeof predicate !== 'string')
      throw new Vg150RowError(`relationships[${i}] needs string "subject", "predicate" and "object"`);
    relationships.push({ subject_id: subject, object_id: object, predicate });
  }
  return {
    image: { image_id: String(row.image_id), width, height, ...(file !== undefined ? { file } : {}) },
    objects,
    relationships,
  };
}
