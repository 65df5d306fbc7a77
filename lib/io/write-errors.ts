/**
 * Node's errors for a failed write (ENOSPC, EIO, EDQUOT) name the syscall,
 * not the file: "ENOSPC: no space left on device, write". On a full disk a
 * user needs to know which file; these helpers add it.
 */

/** An Error whose message names `path`, keeping the original code and cause. */
export function writeError(path: string, error: unknown): Error {
  const e = error as NodeJS.ErrnoException;
  const message = e instanceof Error ? e.message : String(error);
  if (message.includes(path)) return e instanceof Error ? e : new Error(message);
  const out = new Error(`cannot write ${path}: ${message}`, { cause: error }) as NodeJS.ErrnoException;
  if (e?.code) out.code = e.code;
  return out;
}

/** Runs a write of `path`, naming the path in any error it throws. */
export async function writingTo<T>(path: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    throw writeError(path, error);
  }
}
