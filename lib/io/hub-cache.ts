/**
 * Models and data sets by Hugging Face Hub id (`Org/Name`), from the local
 * Hugging Face cache that `huggingface-cli download` fills; nothing is
 * downloaded here. The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub, laid out as
 *   models--Org--Name/refs/main            the commit the main branch points at
 *   models--Org--Name/snapshots/<commit>/  the files of that commit
 * (datasets--Org--Name/ likewise).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative, sep } from 'node:path';

export type HubRepoType = 'model' | 'dataset';

export class HubCacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HubCacheError';
  }
}

/** The cache folder the Hugging Face tools use with this environment. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['HF_HUB_CACHE']) return env['HF_HUB_CACHE'];
  if (env['HUGGINGFACE_HUB_CACHE']) return env['HUGGINGFACE_HUB_CACHE'];
  if (env['HF_HOME']) return join(env['HF_HOME'], 'hub');
  return join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'huggingface', 'hub');
}

const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** `Org/Name`: one slash, no leading `.` or `/`, the characters the Hub allows. A local path of that shape that exists wins over the Hub id. */
export function looksLikeHubId(text: string): boolean {
  return HUB_ID.test(text) && !text.includes('..');
}

/** The command that puts a repository into the cache. */
export function downloadHint(id: string, type: HubRepoType): string {
  return `huggingface-cli download ${type === 'dataset' ? '--repo-type dataset ' : ''}${id}`;
}

/**
 * The snapshot folder of `id` at `revision` (a branch or tag with a file
 * under refs/, or a commit), or a HubCacheError that says how to download it.
 */
export function hubSnapshot(id: string, type: HubRepoType, options: { revision?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const revision = options.revision ?? 'main';
  const cache = hubCacheDir(options.env);
  const repo = join(cache, `${type}s--${id.split('/').join('--')}`);
  const name = `${type} ${id}${revision === 'main' ? '' : `@${revision}`}`;
  const download = `download it with \`${downloadHint(id, type)}${revision === 'main' ? '' : ` --revision ${revision}`}\`, or give a local folder`;
  if (!existsSync(repo)) throw new HubCacheError(`${name} is not in the local Hugging Face cache ${cache}: ${download}`);
  const ref = join(repo, 'refs', revision);
  const commit = existsSync(ref) ? readFileSync(ref, 'utf8').trim() : revision;
  const snapshot = join(repo, 'snapshots', commit);
  if (!/^[A-Za-z0-9_.-]+$/.test(commit) || !existsSync(snapshot))
    throw new HubCacheError(`${name} is not fully in the local Hugging Face cache ${cache} (no snapshot for ${existsSync(ref) ? `refs/${revision} = ${commit}` : `revision ${revision}`}): ${download}`);
  return snapshot;
}

/** A model argument: an existing local folder as given, else a Hub id from the cache; anything else is returned for the caller to report. */
export function resolveModelPath(text: string, env?: NodeJS.ProcessEnv): string {
  if (existsSync(text) || !looksLikeHubId(text)) return text;
  return hubSnapshot(text, 'model', env ? { env } : {});
}

/** `Org/Name@split` (EasyR1's data set syntax), or undefined for a local path. */
export function parseHubDatasetSpec(text: string): { id: string; split: string } | undefined {
  const at = text.lastIndexOf('@');
  if (at <= 0) return undefined;
  const id = text.slice(0, at);
  const split = text.slice(at + 1);
  if (!looksLikeHubId(id) || !/^[A-Za-z0-9_.-]+$/.test(split)) return undefined;
  return { id, split };
}

/**
 * The parquet files of one split of a cached data set, sorted: files named
 * `<split>.parquet` or `<split>-*.parquet`, or under a folder named <split>
 * (the layouts the Hub's parquet conversion and `push_to_hub` write:
 * data/train-00000-of-00002.parquet, train/0000.parquet, ...).
 */
export function hubDatasetFiles(id: string, split: string, env?: NodeJS.ProcessEnv): string[] {
  const snapshot = hubSnapshot(id, 'dataset', env ? { env } : {});
  const parquet = listParquet(snapshot);
  const inSplit = (file: string): boolean => {
    const parts = relative(snapshot, file).split(sep);
    const name = (parts.pop() as string).replace(/\.parquet$/, '');
    return parts.includes(split) || name === split || name.startsWith(`${split}-`);
  };
  /** For the error: the split a file seems to hold (its name's first word, or its folder's for numbered files). */
  const splitOf = (file: string): string => {
    const parts = relative(snapshot, file).split(sep);
    const name = (parts.pop() as string).replace(/\.parquet$/, '');
    return /^\d+$/.test(name) && parts.length > 0 ? (parts[parts.length - 1] as string) : (name.split('-')[0] as string);
  };
  const files = parquet.filter(inSplit).sort();
  if (files.length === 0) {
    const splits = [...new Set(parquet.map(splitOf))].sort();
    throw new HubCacheError(`dataset ${id} in the Hugging Face cache (${snapshot}) has no parquet files for split "${split}"${splits.length > 0 ? `; splits there: ${splits.join(', ')}` : '; it holds no parquet files'}`);
  }
  return files;
}

function listParquet(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    // Snapshot files are symlinks into blobs/.
    const isDir = entry.isDirectory() || (entry.isSymbolicLink() && statSync(path).isDirectory());
    if (isDir) out.push(...listParquet(path));
    else if (entry.name.endsWith('.parquet')) out.push(path);
  }
  return out;
}
