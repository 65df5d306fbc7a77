/**
 * The files of a model directory the native loader will open must be regular
 * files: opening a FIFO named model.safetensors blocks until something writes
 * to it (forever), and a device can be endless. Symlinks to regular files (the
 * Hugging Face cache layout) are fine.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

const OPENED = /(\.safetensors|^model\.safetensors\.index\.json|^config\.json)$/;

export async function assertRegularModelFiles(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // reading config.json then says what is wrong with the directory
  }
  for (const name of names) {
    if (!OPENED.test(name)) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info && !info.isFile()) throw new Error(`${path}: not a regular file (${kindOf(info)}); refusing to open it`);
  }
}

function kindOf(info: Awaited<ReturnType<typeof stat>>): string {
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isDirectory()) return 'a directory';
  return 'not a plain file';
}
