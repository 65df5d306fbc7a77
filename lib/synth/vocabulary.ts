/**
 * Label lists behind the salience rules of the question generator (method.md §4.3 step 1):
 * parts, body parts, clothing and background "stuff" are never the subject of a question;
 * synonym classes decide whether a label names a single instance; the VG150 object classes
 * are the vocabulary that absent labels for existence questions are drawn from.
 */
import pluralize from 'pluralize';

/** The 150 VG150 object classes (single lower-case words). */
export const VG150_OBJECTS: readonly string[] = [
  'airplane', 'animal', 'arm', 'bag', 'banana', 'basket', 'beach', 'bear', 'bed', 'bench',
  'bike', 'bird', 'board', 'boat', 'book', 'boot', 'bottle', 'bowl', 'box', 'boy',
  'branch', 'building', 'bus', 'cabinet', 'cap', 'car', 'cat', 'chair', 'child', 'clock',
  'coat', 'counter', 'cow', 'cup', 'curtain', 'desk', 'dog', 'door', 'drawer', 'ear',
  'elephant', 'engine', 'eye', 'face', 'fence', 'finger', 'flag', 'flower', 'food', 'fork',
  'fruit', 'giraffe', 'girl', 'glass', 'glove', 'guy', 'hair', 'hand', 'handle', 'hat',
  'head', 'helmet', 'hill', 'horse', 'house', 'jacket', 'jean', 'kid', 'kite', 'lady',
  'lamp', 'laptop', 'leaf', 'leg', 'letter', 'light', 'logo', 'man', 'men', 'motorcycle',
  'mountain', 'mouth', 'neck', 'nose', 'number', 'orange', 'pant', 'paper', 'paw', 'people',
  'person', 'phone', 'pillow', 'pizza', 'plane', 'plant', 'plate', 'player', 'pole', 'post',
  'pot', 'racket', 'railing', 'rock', 'roof', 'room', 'screen', 'seat', 'sheep', 'shelf',
  'shirt', 'shoe', 'short', 'sidewalk', 'sign', 'sink', 'skateboard', 'ski', 'skier', 'sneaker',
  'snow', 'sock', 'stand', 'street', 'surfboard', 'table', 'tail', 'tie', 'tile', 'tire',
  'toilet', 'towel', 'tower', 'track', 'train', 'tree', 'truck', 'trunk', 'umbrella', 'vase',
  'vegetable', 'vehicle', 'wave', 'wheel', 'window', 'windshield', 'wing', 'wire', 'woman', 'zebra',
];

/** Parts of objects, decorations and text: low salience, the reference's first salience rule. */
export const PART_LABELS: ReadonlySet<string> = new Set([
  'logo', 'label', 'sticker', 'emblem', 'pattern', 'text', 'writing', 'word', 'letter', 'number',
  'sign', 'screen', 'patch', 'button', 'window', 'handle', 'knob', 'spot', 'stripe', 'design',
  'edge', 'corner', 'side', 'part', 'piece', 'wheel', 'tire', 'windshield', 'engine', 'roof',
  'wing', 'trunk', 'branch', 'leaf', 'stem', 'drawer', 'door', 'tile', 'shadow', 'reflection',
  'line', 'mark', 'hole', 'frame', 'strap', 'string', 'wire', 'cord', 'plug', 'lid',
]);

export const BODY_PART_LABELS: ReadonlySet<string> = new Set([
  'hair', 'head', 'ear', 'eye', 'nose', 'mouth', 'neck', 'arm', 'hand', 'finger',
  'leg', 'foot', 'knee', 'shoulder', 'paw', 'tail', 'face', 'beard', 'lip', 'tooth',
  'mane', 'hoof', 'horn', 'back', 'body', 'skin', 'fur', 'elbow', 'wrist', 'toe',
  'nail', 'eyebrow', 'cheek', 'chin', 'forehead', 'thumb', 'trunk', 'feather', 'beak', 'whisker',
]);

export const CLOTHING_LABELS: ReadonlySet<string> = new Set([
  'shirt', 'jacket', 'coat', 'pant', 'jean', 'short', 'hat', 'cap', 'helmet', 'glove',
  'shoe', 'boot', 'sneaker', 'sock', 'tie', 'dress', 'skirt', 'sweater', 'hoodie', 'uniform',
  'vest', 'scarf', 'jersey', 'sleeve', 'collar', 'belt', 'glasses', 'sunglasses', 'goggles', 'top',
  'suit', 'wetsuit', 'outfit', 'clothes', 'clothing', 'sandal', 'hood', 'apron', 'bandana', 'beanie',
]);

/**
 * Background and "stuff" regions (no extent of their own to compare): kept out of every
 * geometric question, and relations that put something on or in them are trivially expected.
 */
export const STUFF_LABELS: ReadonlySet<string> = new Set([
  'sky', 'ground', 'floor', 'grass', 'road', 'street', 'sidewalk', 'field', 'snow', 'water',
  'wall', 'ceiling', 'beach', 'ocean', 'sea', 'sand', 'dirt', 'hill', 'mountain', 'room',
  'air', 'background', 'shade', 'pavement', 'lawn', 'cloud', 'track', 'wave', 'area', 'surface',
]);

/**
 * Labels one thing may be annotated under twice (Visual Genome often names the same person
 * "man" and "person"): a label whose class holds several objects is not a single instance.
 */
export const SYNONYM_CLASSES: readonly (readonly string[])[] = [
  [
    'person', 'people', 'man', 'men', 'woman', 'women', 'boy', 'girl', 'child', 'children', 'kid',
    'lady', 'guy', 'player', 'skier', 'surfer', 'skateboarder', 'snowboarder', 'rider', 'biker',
    'spectator', 'tourist', 'pedestrian', 'adult', 'gentleman',
  ],
  ['bike', 'bicycle'],
  ['motorcycle', 'motorbike'],
  ['plane', 'airplane', 'aeroplane', 'jet', 'aircraft'],
  ['car', 'vehicle', 'automobile'],
  ['cup', 'mug'],
  ['couch', 'sofa'],
  ['phone', 'cellphone', 'telephone'],
  ['television', 'tv'],
  ['rock', 'stone', 'boulder'],
  ['sign', 'signboard'],
];

const SYNONYM_CLASS = new Map<string, number>();
SYNONYM_CLASSES.forEach((words, i) => {
  for (const w of words) SYNONYM_CLASS.set(w, i);
});

/** The last word of a label in singular form ("tennis shoes" -> "shoe"). */
export function headNoun(label: string): string {
  return memo(headCache, label, () => {
    const words = label.split(' ');
    const last = words[words.length - 1] ?? label;
    return pluralize.singular(last);
  });
}

// Labels repeat across millions of questions: the pluralize-based helpers are memoised.
const headCache = new Map<string, string>();
const keyCache = new Map<string, string>();
const salienceCache = new Map<string, SalienceProblem | undefined>();
const pluralCache = new Map<string, boolean>();

function memo<V>(cache: Map<string, V>, key: string, compute: () => V): V {
  if (cache.has(key)) return cache.get(key) as V;
  const value = compute();
  if (cache.size >= 50_000) cache.clear();
  cache.set(key, value);
  return value;
}

/**
 * A label's class key: its synonym class when it has one, else the label with its head
 * noun in the singular ("trees" and "tree" are one class).
 */
export function synonymKey(label: string): string {
  return memo(keyCache, label, () => {
    const head = headNoun(label);
    const cls = SYNONYM_CLASS.get(label) ?? SYNONYM_CLASS.get(head);
    if (cls !== undefined) return `#${cls}`;
    const words = label.split(' ');
    words[words.length - 1] = head;
    return words.join(' ');
  });
}

export type SalienceProblem = 'part' | 'body-part' | 'clothing' | 'background';

/** Why a label is of low salience, or undefined when it may be asked about. */
export function salienceProblem(label: string): SalienceProblem | undefined {
  return memo(salienceCache, label, () => {
    const head = headNoun(label);
    const test = (set: ReadonlySet<string>) => set.has(label) || set.has(head);
    if (test(BODY_PART_LABELS)) return 'body-part';
    if (test(CLOTHING_LABELS)) return 'clothing';
    if (test(PART_LABELS)) return 'part';
    if (test(STUFF_LABELS)) return 'background';
    return undefined;
  });
}

/** A plural label ("people", "skis") reads badly as "the people" in these templates. */
export function isPluralLabel(label: string): boolean {
  return memo(pluralCache, label, () => {
    const words = label.split(' ');
    const last = words[words.length - 1] ?? label;
    return pluralize.isPlural(last) && pluralize.singular(last) !== last;
  });
}

/** "a" or "an" before a label, by its first letter. */
export function article(label: string): string {
  return /^[aeiou]/.test(label) ? 'an' : 'a';
}

/** The plural of a label: its last word pluralised ("traffic light" -> "traffic lights"). */
export function pluralLabel(label: string): string {
  const words = label.split(' ');
  words[words.length - 1] = pluralize.plural(words[words.length - 1] ?? '');
  return words.join(' ');
}
