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
  d.gtBoxes = sized(document.querySelectorAll('.overlay.gt rect'), client);
  d.predBoxes = sized(document.querySelectorAll('.overlay.pred rect'), client);
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
  // The first sample (val, step 10, 320 x 320 shown at 320 px): cube.1's box starts at (64, 96).
  const [dx, dy] = (data('box-offset') ?? '').split(',').map(Number);
  t.ok(Math.abs(dx! - 64) <= 3 && Math.abs(dy! - 96) <= 3, `the box sits where the ground truth puts it (${dx}, ${dy})`);
});
