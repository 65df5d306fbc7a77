/** A model argument: a local folder, or a Hub id (`Org/Name`) found in the local Hugging Face cache. */
import { HubCacheError, resolveModelPath } from '../io/hub-cache.js';
import { CliError } from './errors.js';

/** The folder `arg` names; a Hub id not in the cache fails with one line saying how to download it. */
export function modelDirectory(arg: string, what: string): string {
  try {
    return resolveModelPath(arg);
  } catch (error) {
    if (error instanceof HubCacheError) throw new CliError(`${what}: ${error.message}`);
    throw error;
  }
}
