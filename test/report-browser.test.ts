/**
 * The report as a browser shows it: headless Chromium lays the page out and a
 * probe script added to a copy of it counts the charts and polylines that
 * render with a non-zero size, the images that decoded, and the box overlays;
 * the test reads those counts back from --dump-dom.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { buildRunReport } from '../lib/report/run-report.js';
import { writeDemo } from './helpers-report.js';

/** A Chromium binary: $CHROMIUM, else the usual names on PATH. */
function findChromium(): string | undefined {
  if (process.env['CHROMIUM']) return process.env['CHROMIUM'];
  const names = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
  for (const dir of (process.env['PATH'] ?? '').split(delimiter))
    for (const name of names) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

const chromium = findChromium();
const noChromium = chromium ? false : 'no chromium binary found (set CHROMIUM or install Debian\'s chromium package)';
if (noChromium) t.comment(`skipping the browser check: ${noChromium}`);

const PROBE = `<script>
addEventListener('load', () => {
  const sized = (els, box) => [...els].filter((e) => box(e).width > 0 && box(e).height > 0).length;
  const client = (e) => e.getBoundingClientRect();
  const d = document.body.dataset;
  d.charts = sized(document.querySelectorAll('svg.chart'), (e) => e.getBBox());
  d.lines = sized(document.querySelectorAll('svg.chart polyline'), (e) => e.getBBox());
  d.images = document.images.length;
  d.imagesLoaded = [...document.images].filter((i) => i.complete && i.naturalWidth > 0).length;
  d.gtBoxes = sized(document.querySelectorAll('.overlay.gt rect.box'), client);
  d.predBoxes = sized(document.querySelectorAll('.overlay.pred rect.box'), client);
  // Every box label (its tag and its text) lies inside its picture, and its text inside its tag.
  const inside = (a, b, slack) => a.left >= b.left - slack && a.top >= b.top - slack && a.right <= b.right + slack && a.bottom <= b.bottom + slack;
  let labels = 0, labelsOutside = 0, textOutsideTag = 0, smallestFont = Infinity;
  for (const pic of document.querySelectorAll('.pic')) {
    const frame = client(pic.querySelector('img'));
    for (const label of pic.querySelectorAll('g.label')) {
      labels++;
      const tag = client(label.querySelector('rect'));
      const text = client(label.querySelector('text'));
      if (!inside(tag, frame, 0.5) || !inside(text, frame, 0.5)) labelsOutside++;
      if (!inside(text, tag, 1)) textOutsideTag++;
      smallestFont = Math.min(smallestFont, parseFloat(getComputedStyle(label.querySelector('text')).fontSize));
    }
  }
  Object.assign(d, { labels, labelsOutside, textOutsideTag, smallestFont });
  d.smallestImage = Math.min(...[...document.querySelectorAll('.pic img')].map((i) => Math.max(client(i).width, client(i).height)));
  // Where each chart's first and last points land within its plot frame, as fractions of the frame's width.
  d.pointSpans = JSON.stringify(Object.fromEntries([...document.querySelectorAll('svg.chart')].map((svg) => {
    const frame = client(svg.querySelector('rect.frame'));
    const xs = [...svg.querySelectorAll('circle')].map((c) => (client(c).left + client(c).right) / 2);
    return [svg.getAttribute('aria-label'), xs.length ? [(Math.min(...xs) - frame.left) / frame.width, (Math.max(...xs) - frame.left) / frame.width].map((f) => Math.round(f * 100) / 100) : null];
  })));
  // A constant metric is one line of text.
  const constants = [...document.querySelectorAll('li.constant')];
  d.constants = constants.length;
  d.constantsTaller = constants.filter((li) => client(li).height > 1.6 * parseFloat(getComputedStyle(li).lineHeight || '20')).length;
  // Where the first ground-truth box lands on its image, in CSS pixels.
  const pic = document.querySelector('.pic');
  const gt = pic.querySelector('.overlay.gt rect');
  d.boxOffset = [client(gt).left - client(pic.querySelector('img')).left, client(gt).top - client(pic.querySelector('img')).top].map(Math.round).join(',');
  d.done = '1';
});
</script>`;

t.test('Chromium renders the charts, the images and both kinds of boxes', { skip: noChromium }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-report-browser-'));
  await writeDemo(dir);
  const report = await buildRunReport(dir);
  const page = join(dir, 'probed.html');
  writeFileSync(page, report.html.replace('</body>', `${PROBE}</body>`));
  const r = spawnSync(
    chromium as string,
    ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${join(dir, 'profile')}`, '--window-size=1400,1000', '--dump-dom', pathToFileURL(page).href],
    { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 },
  );
  t.equal(r.error, undefined, r.error ? `${chromium} cannot run: ${r.error.message}` : 'chromium ran');
  const body = /<body([^>]*)>/.exec(r.stdout)?.[1] ?? '';
  /** A data-* attribute the probe set (dataset.fooBar is data-foo-bar). */
  const data = (name: string) => new RegExp(`data-${name}="([^"]*)"`).exec(body)?.[1];
  t.equal(data('done'), '1', data('done') === '1' ? 'the probe ran' : `the probe did not run (chromium exit ${r.status}; stderr ends: ${r.stderr.slice(-600)})`);

  const images = (report.html.match(/<img /g) ?? []).length;
  t.equal(Number(data('charts')), report.charts, `all ${report.charts} charts have a non-zero size`);
  t.ok(Number(data('lines')) >= report.charts - 1, `chart lines drawn (${data('lines')})`);
  t.equal(Number(data('images')), images);
  t.ok(images >= 10, `the page has the samples' images (${images})`);
  t.equal(Number(data('images-loaded')), images, 'every embedded image decodes');
  t.equal(Number(data('gt-boxes')), 2 * images, 'two ground-truth boxes per image');
  t.equal(Number(data('pred-boxes')), 2 * images, 'two predicted boxes per image');
  t.equal(Number(data('labels')), 4 * images, 'each box has its label');
  t.equal(Number(data('labels-outside')), 0, 'no label runs off its picture');
  t.equal(Number(data('text-outside-tag')), 0, "every label's text fits its background tag");
  t.ok(Number(data('smallest-font')) >= 12, `labels are at least 12 px (${data('smallest-font')})`);
  t.ok(Number(data('smallest-image')) >= 400, `pictures are shown at least 400 px on their longer side (${data('smallest-image')})`);

  // Each chart's x axis is its own kind of run's steps: GRPO's validations at 0..10 span the whole frame, SFT's at 4, 8, 12 on steps 1..12 start 3/11 in.
  const spans = JSON.parse((data('point-spans') ?? '{}').replace(/&quot;/g, '"')) as Record<string, [number, number] | null>;
  t.same(spans['val/accuracy (GRPO)'], [0, 1], "GRPO's validation spans its own steps");
  t.ok(Math.abs(spans['val/accuracy (SFT)']![0] - 3 / 11) < 0.02 && spans['val/accuracy (SFT)']![1] === 1, `SFT's validation on SFT's steps (${spans['val/accuracy (SFT)']})`);
  t.same(spans['reward/overall (GRPO)'], [0.1, 1], "train curves (steps 1..10) on the run's steps 0..10 (it validated at 0)");
  t.equal(Number(data('constants')), report.constants, `the ${report.constants} constant metrics are shown as lines`);
  t.equal(Number(data('constants-taller')), 0, 'each on one line');
  t.notOk(Object.keys(spans).some((k) => k.startsWith('actor/lr')), 'not as charts');
  // The first sample (320 x 320 shown at 400 px): cube.1's box [64, 96, ...] starts at (80, 120).
  const [dx, dy] = (data('box-offset') ?? '').split(',').map(Number);
  t.ok(Math.abs(dx! - 80) <= 3 && Math.abs(dy! - 120) <= 3, `the box sits where the ground truth puts it (${dx}, ${dy})`);
});
