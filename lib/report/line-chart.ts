/**
 * Line charts as inline SVG (no scripts, no external resources): one metric,
 * one line per run, x = step. Points carry <title>s, so hovering shows values.
 */
import { escapeHtml, formatValue } from './html.js';

export interface ChartSeries {
  label: string;
  color: string;
  /** (x, y) points sorted by x. */
  points: readonly (readonly [number, number])[];
  /** A shaded band around the line: (x, low, high) sorted by x (mean ± standard error over seeds). */
  band?: readonly (readonly [number, number, number])[];
}

export interface ChartOptions {
  width?: number;
  height?: number;
  /** Draw a legend under the plot (default: when there is more than one series). */
  legend?: boolean;
  xLabel?: string;
  /** The x range shown (default: the points'): a run's own steps, so a curve logged every few steps is not squeezed against another run's. */
  xDomain?: readonly [number, number];
  /** A second, smaller line under the title. */
  subtitle?: string;
}

/** Up to ~`count` round tick values (1, 2 or 5 times a power of ten) covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5, integer = false): { ticks: number[]; step: number } {
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  let step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
  if (integer) step = Math.max(1, Math.round(step));
  const ticks: number[] = [];
  const first = Math.ceil(min / step - 1e-9);
  for (let i = first; i * step <= max + step * 1e-9; i++) ticks.push(i * step);
  return { ticks, step };
}

/** Tick labels with as many digits as the tick spacing needs (so 1.0001 and 1.0002 differ). */
function tickLabel(value: number, step: number, largest: number): string {
  if (Math.abs(value) < step * 1e-9) return '0';
  const stepPower = Math.floor(Math.log10(step) + 1e-9);
  if (largest >= 1e6 || (largest < 1e-2 && step < 1e-3)) {
    // One mantissa precision for the whole axis, set by its largest value.
    const digits = Math.max(0, Math.floor(Math.log10(largest) + 1e-9) - stepPower);
    return value.toExponential(Math.min(digits, 6));
  }
  return value.toFixed(Math.max(0, -stepPower));
}

/** The y range shown: the data with a margin; a flat line gets a band around it. */
function yRange(values: number[]): [number, number] {
  let [lo, hi] = extent(values);
  if (hi - lo <= Math.abs(hi) * 1e-9) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.05;
  // Do not push a non-negative quantity (a rate, a loss) below zero just for the margin.
  lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad;
  hi += pad;
  return [lo, hi];
}

/** [min, max] without spreading (long runs have more points than a call may take arguments). */
function extent(values: readonly number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

const r1 = (v: number) => Math.round(v * 10) / 10;

/** Points get a marker (and a hover title) when a series is short enough for them to stay readable. */
const MAX_MARKED_POINTS = 60;

export function lineChart(title: string, series: readonly ChartSeries[], options: ChartOptions = {}): string {
  const width = options.width ?? 380;
  const plotHeight = options.height ?? 210;
  const drawn = series.filter((s) => s.points.length > 0);
  const showLegend = options.legend ?? drawn.length > 1;
  const margin = { left: 58, right: 12, top: options.subtitle ? 38 : 26, bottom: 34 };

  // Legend entries flow left to right and wrap.
  const legendItems: { x: number; row: number; s: ChartSeries }[] = [];
  if (showLegend) {
    let x = margin.left;
    let row = 0;
    for (const s of drawn) {
      const itemWidth = 26 + 6.4 * s.label.length;
      if (x + itemWidth > width - margin.right && x > margin.left) {
        row++;
        x = margin.left;
      }
      legendItems.push({ x, row, s });
      x += itemWidth + 10;
    }
  }
  const legendRows = legendItems.length ? Math.max(...legendItems.map((i) => i.row)) + 1 : 0;
  const height = plotHeight + legendRows * 16;
  const plot = { x0: margin.left, x1: width - margin.right, y0: margin.top, y1: plotHeight - margin.bottom };

  const parts: string[] = [
    `<text class="title" x="${margin.left}" y="16">${escapeHtml(title)}</text>`,
  ];
  if (options.subtitle) parts.push(`<text class="subtitle" x="${margin.left}" y="29">${escapeHtml(options.subtitle)}</text>`);
  let domain = '';
  if (drawn.length === 0) {
    parts.push(`<text class="empty" x="${(plot.x0 + plot.x1) / 2}" y="${(plot.y0 + plot.y1) / 2}" text-anchor="middle">no data</text>`);
  } else {
    const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
    const ys = drawn.flatMap((s) => [...s.points.map((p) => p[1]), ...(s.band ?? []).flatMap((b) => [b[1], b[2]])]);
    let [xMin, xMax] = extent(xs);
    if (options.xDomain) [xMin, xMax] = [Math.min(xMin, options.xDomain[0]), Math.max(xMax, options.xDomain[1])];
    domain = ` data-x-min="${xMin}" data-x-max="${xMax}"`;
    if (xMax === xMin) {
      xMin -= 1;
      xMax += 1;
    }
    const [yMin, yMax] = yRange(ys);
    const sx = (x: number) => r1(plot.x0 + ((x - xMin) / (xMax - xMin)) * (plot.x1 - plot.x0));
    const sy = (y: number) => r1(plot.y1 - ((y - yMin) / (yMax - yMin)) * (plot.y1 - plot.y0));

    const yTicks = niceTicks(yMin, yMax, 5);
    const largest = Math.max(Math.abs(yMin), Math.abs(yMax));
    for (const v of yTicks.ticks) {
      const y = sy(v);
      parts.push(`<line class="grid" x1="${plot.x0}" x2="${plot.x1}" y1="${y}" y2="${y}"/>`);
      parts.push(`<text class="tick" x="${plot.x0 - 5}" y="${y + 3.5}" text-anchor="end">${tickLabel(v, yTicks.step, largest)}</text>`);
    }
    const xTicks = niceTicks(xMin, xMax, 6, true);
    for (const v of xTicks.ticks) {
      const x = sx(v);
      parts.push(`<line class="tickmark" x1="${x}" x2="${x}" y1="${plot.y1}" y2="${plot.y1 + 4}"/>`);
      parts.push(`<text class="tick" x="${x}" y="${plot.y1 + 15}" text-anchor="middle">${v}</text>`);
    }
    parts.push(`<rect class="frame" x="${plot.x0}" y="${plot.y0}" width="${plot.x1 - plot.x0}" height="${plot.y1 - plot.y0}"/>`);
    parts.push(`<text class="axis" x="${(plot.x0 + plot.x1) / 2}" y="${plot.y1 + 29}" text-anchor="middle">${escapeHtml(options.xLabel ?? 'step')}</text>`);

    for (const s of drawn) {
      if (s.band && s.band.length > 1) {
        const upper = s.band.map(([x, , hi]) => `${sx(x)},${sy(hi)}`);
        const lower = [...s.band].reverse().map(([x, lo]) => `${sx(x)},${sy(lo)}`);
        parts.push(`<polygon class="band" points="${[...upper, ...lower].join(' ')}" fill="${s.color}"/>`);
      }
    }
    for (const s of drawn) {
      const last = s.points[s.points.length - 1]!;
      const summary = `${s.label}: ${formatValue(last[1])} at step ${last[0]}`;
      if (s.points.length > 1) {
        const coords = s.points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' ');
        parts.push(`<polyline class="series" points="${coords}" stroke="${s.color}"><title>${escapeHtml(summary)}</title></polyline>`);
      }
      if (s.points.length <= MAX_MARKED_POINTS) {
        for (const [x, y] of s.points)
          parts.push(
            `<circle cx="${sx(x)}" cy="${sy(y)}" r="${s.points.length === 1 ? 3.5 : 2.2}" fill="${s.color}"><title>${escapeHtml(`${s.label} step ${x}: ${formatValue(y)}`)}</title></circle>`,
          );
      }
    }
  }
  for (const { x, row, s } of legendItems) {
    const y = plotHeight + row * 16 + 4;
    parts.push(
      `<g class="legend"><line x1="${x}" x2="${x + 18}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="3"/>` +
        `<text x="${x + 23}" y="${y + 4}">${escapeHtml(s.label)}</text></g>`,
    );
  }
  return (
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(title)}"${domain}>` +
    `<title>${escapeHtml(title)}</title>${parts.join('')}</svg>`
  );
}

/** CSS for the charts, for the page's <style>. */
export const CHART_CSS = `
svg.chart{background:#fff;border:1px solid #e3e3e3;border-radius:4px}
svg.chart .title{font:600 13px sans-serif;fill:#222}
svg.chart .subtitle{font:11px sans-serif;fill:#777}
svg.chart .band{fill-opacity:.18;stroke:none}
svg.chart .tick,svg.chart .axis,svg.chart .legend text{font:11px sans-serif;fill:#555}
svg.chart .empty{font:12px sans-serif;fill:#999}
svg.chart .grid{stroke:#eee}
svg.chart .tickmark{stroke:#999}
svg.chart .frame{fill:none;stroke:#bbb}
svg.chart .series{fill:none;stroke-width:1.8;stroke-linejoin:round}
svg.chart circle:hover{r:5}
`;
