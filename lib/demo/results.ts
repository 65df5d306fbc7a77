/**
 * The demo's results: per policy and question set, accuracy, format rate and
 * box CIoU as means ± standard errors over seeds (and per-category accuracy);
 * the paired differences the paper's claims are about (dense − sparse,
 * dense − SFT, gated − ungated), each per seed and with its standard errors.
 * Built once as plain tables in summary.json, so results.md, the console and
 * the HTML report show the same numbers.
 */
import type { DemoSummary, EvalSet, PolicyResult } from './demo.js';
import { formatMeanSe, meanSe, pairedDifference, type MeanSe, type PairedDifference, type RowValues } from './statistics.js';

export interface ResultTable {
  title: string;
  caption: string;
  columns: string[];
  rows: string[][];
}

export interface PolicyStats {
  policy: string;
  set: EvalSet;
  seeds: number[];
  accuracy: MeanSe;
  format: MeanSe;
  ciou: MeanSe;
  answerIsOption: MeanSe;
  categories: Record<string, MeanSe>;
}

export interface DemoResults {
  policies: PolicyStats[];
  paired: PairedDifference[];
  tables: ResultTable[];
  /** One line per claim: whether it holds beyond 2 SE on held-out accuracy, with the numbers. */
  verdicts: string[];
  consoleText: string;
}

const POLICY_ORDER = ['base', 'sft', 'grpo-sparse', 'grpo-dense', 'grpo-dense-ungated'] as const;
const SET_LABEL: Record<EvalSet, string> = { 'held-out': 'held-out split', 'second-world': 'second world' };

/** The comparisons: a − b, arms of the same seed. */
export const COMPARISONS: readonly { name: string; a: string; b: string }[] = [
  { name: 'dense − sparse', a: 'grpo-dense', b: 'grpo-sparse' },
  { name: 'dense − SFT', a: 'grpo-dense', b: 'sft' },
  { name: 'gated − ungated', a: 'grpo-dense', b: 'grpo-dense-ungated' },
];

const METRIC_KEYS: Record<keyof RowValues, string> = { accuracy: 'val/accuracy', format: 'val/format_rate', ciou: 'val/ciou' };
const METRIC_LABEL: Record<keyof RowValues, string> = { accuracy: 'accuracy', format: 'format rate', ciou: 'box CIoU' };

export function buildResults(results: readonly PolicyResult[], sets: DemoSummary['sets'], seeds: readonly number[]): DemoResults {
  const sets_ = Object.keys(sets) as EvalSet[];
  const policies: PolicyStats[] = [];
  for (const set of sets_)
    for (const policy of POLICY_ORDER) {
      const mine = results.filter((r) => r.policy === policy);
      if (mine.length === 0) continue;
      const values = (key: string) => mine.map((r) => r.evaluations[set].metrics[key]).filter((v): v is number => typeof v === 'number');
      const categories = [...new Set(mine.flatMap((r) => Object.keys(r.evaluations[set].metrics).filter((k) => k.startsWith('val/accuracy/')).map((k) => k.slice('val/accuracy/'.length))))].sort();
      policies.push({
        policy,
        set,
        seeds: mine.map((r) => r.seed).filter((s): s is number => s !== null),
        accuracy: meanSe(values('val/accuracy')),
        format: meanSe(values('val/format_rate')),
        ciou: meanSe(values('val/ciou')),
        answerIsOption: meanSe(values('val/answer_is_option')),
        categories: Object.fromEntries(categories.map((c) => [c, meanSe(values(`val/accuracy/${c}`))])),
      });
    }

  const paired: PairedDifference[] = [];
  for (const set of sets_)
    for (const { name, a, b } of COMPARISONS)
      for (const metric of ['accuracy', 'ciou', 'format'] as const) {
        const side = (policy: string) =>
          seeds.map((seed) => results.find((r) => r.policy === policy && r.seed === seed)).filter((r): r is PolicyResult => r !== undefined);
        const as = side(a);
        const bs = side(b);
        if (as.length !== seeds.length || bs.length !== seeds.length) continue;
        const pick = (r: PolicyResult) => ({ mean: r.evaluations[set].metrics[METRIC_KEYS[metric]] ?? NaN, rows: r.evaluations[set].rows });
        paired.push(pairedDifference(name, set, metric, as.map(pick), bs.map(pick)));
      }

  const tables: ResultTable[] = [];
  const seedNote =
    seeds.length > 1
      ? `± is the standard error of the mean over the ${seeds.length} seeds (${seeds.join(', ')}); the base is one model, so it has no spread over seeds`
      : `one seed (${seeds.join(', ')}): no standard error over seeds; see the paired differences for the per-row standard errors`;
  for (const set of sets_) {
    const info = sets[set];
    const rows = policies
      .filter((p) => p.set === set)
      .map((p) => [
        p.policy,
        p.seeds.length > 0 ? p.seeds.join(',') : 'n/a',
        formatMeanSe(p.accuracy),
        formatMeanSe({ ...p.accuracy, mean: p.accuracy.mean - info.chance }, 3, true),
        formatMeanSe(p.format),
        formatMeanSe(p.ciou),
        formatMeanSe(p.answerIsOption),
      ]);
    tables.push({
      title: `${SET_LABEL[set]}: ${info.rows} rows of world ${info.worldSeed}, chance accuracy ${info.chance.toFixed(3)}`,
      caption: `Accuracy above chance is accuracy minus the set's chance rate (the mean over rows of 1 / number of options). ${seedNote}.`,
      columns: ['policy', 'seeds', 'accuracy', 'accuracy − chance', 'format rate', 'box CIoU', 'answer is an option'],
      rows,
    });
  }
  for (const set of sets_) {
    const mine = policies.filter((p) => p.set === set);
    const categories = [...new Set(mine.flatMap((p) => Object.keys(p.categories)))].sort();
    tables.push({
      title: `per-category accuracy, ${SET_LABEL[set]}`,
      caption: `Accuracy within each question category (categories have few rows each, so these are noisy). ${seedNote}.`,
      columns: ['policy', ...categories],
      rows: mine.map((p) => [p.policy, ...categories.map((c) => (p.categories[c] ? formatMeanSe(p.categories[c] as MeanSe, 2) : '-'))]),
    });
  }
  tables.push({
    title: 'paired differences (same seed = same base and data order)',
    caption:
      'a − b per seed, their mean ± the standard error over seeds, and ± the standard error over rows of the per-row paired difference ' +
      '(the evaluation sampling noise alone). "beyond 2 SE" uses the SE over seeds with two or more seeds, else the SE over rows.',
    columns: ['comparison', 'set', 'metric', 'per seed', 'mean ± SE (seeds)', 'SE (rows)', 'beyond 2 SE'],
    rows: paired.map((d) => [
      d.name,
      SET_LABEL[d.set as EvalSet] ?? d.set,
      METRIC_LABEL[d.metric],
      d.perSeed.map((v) => `${v >= 0 ? '+' : ''}${v.toFixed(3)}`).join(', '),
      formatMeanSe(d.overSeeds, 3, true),
      d.overRows.se === null ? '-' : d.overRows.se.toFixed(3),
      d.beyondTwoSe ? `yes (${d.overSeeds.mean > 0 ? 'a > b' : 'a < b'}, SE over ${d.seFrom})` : `no (SE over ${d.seFrom})`,
    ]),
  });

  const verdicts = COMPARISONS.map(({ name }) => {
    const d = paired.find((p) => p.name === name && p.set === 'held-out' && p.metric === 'accuracy');
    if (!d) return `${name}: not run`;
    const se = d.seFrom === 'seeds' ? d.overSeeds.se : d.overRows.se;
    const holds = d.beyondTwoSe && d.overSeeds.mean > 0;
    return (
      `${name.replace(' − ', ' > ')} on held-out accuracy: ${holds ? 'holds' : 'does not hold'} beyond 2 SE ` +
      `(difference ${d.overSeeds.mean >= 0 ? '+' : ''}${d.overSeeds.mean.toFixed(3)}, SE ${se === null ? '-' : se.toFixed(3)} over ${d.seFrom}, ${d.perSeed.length} seed${d.perSeed.length === 1 ? '' : 's'})`
    );
  });
  const dense = policies.find((p) => p.policy === 'grpo-dense' && p.set === 'held-out');
  if (dense)
    verdicts.push(
      `dense GRPO held-out accuracy ${dense.accuracy.mean.toFixed(3)} is ${(dense.accuracy.mean - sets['held-out'].chance).toFixed(3)} above its questions' chance rate ${sets['held-out'].chance.toFixed(3)}`,
    );

  return { policies, paired, tables, verdicts, consoleText: [...tables.map(textTable), verdicts.join('\n')].join('\n\n') };
}

function textTable(t: ResultTable): string {
  const widths = t.columns.map((c, i) => Math.max(c.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((v, i) => v.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [t.title, line(t.columns), line(widths.map((w) => '-'.repeat(w))), ...t.rows.map(line)].join('\n');
}

const cell = (s: string) => s.replaceAll('|', '\\|');

/** results.md: what the README's table is pasted from. */
export function resultsMarkdown(summary: DemoSummary): string {
  const s = summary.statistics;
  const lines = [
    '# SpatialThinker demo results',
    '',
    `- commit: \`${summary.commit ?? 'not a git checkout'}\``,
    `- command: \`${summary.command}\``,
    `- base: ${summary.base.source} (\`model.safetensors\` sha256 \`${summary.base.sha256}\`)`,
    `- seeds: ${summary.options.seeds.join(', ')}; GRPO ${summary.options.grpoSteps} steps x ${summary.options.promptsPerStep} prompts x ${summary.options.samplesPerPrompt} samples; SFT ${summary.options.sftSteps} steps x ${summary.options.sftBatch} rows`,
    `- evaluation: ${summary.options.evalSamples} completions per row at temperature ${summary.options.evalTemperature}`,
    `- wall time: ${Math.round(Object.values(summary.seconds).reduce((a, b) => a + b, 0))} s; CPU time ${Math.round(Object.values(summary.cpuSeconds ?? {}).reduce((a, b) => a + b, 0))} s (user + system, all threads; on a shared machine the wall time includes waiting for other processes)`,
    '',
  ];
  for (const t of s.tables) {
    lines.push(`## ${t.title}`, '', t.caption, '', `| ${t.columns.map(cell).join(' | ')} |`, `|${t.columns.map(() => '---').join('|')}|`);
    for (const r of t.rows) lines.push(`| ${r.map(cell).join(' | ')} |`);
    lines.push('');
  }
  lines.push('## claims', '', ...s.verdicts.map((v) => `- ${v}`), '');
  return lines.join('\n');
}
