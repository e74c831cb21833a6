/**
 * The per-user cache folder and the small JSON records sdnode keeps there: model hashes (by path, size and mtime)
 * and GPU backend probe verdicts. Every read tolerates a missing or damaged file (the record is then recomputed),
 * and every write is atomic (temporary file + rename) and best-effort: an unwritable cache never fails a call.
 * @internal
 * @packageDocumentation
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** `$SDNODE_CACHE_DIR`, else `$XDG_CACHE_HOME/sdnode`, else `~/.cache/sdnode`. */
export function userCacheDir(): string {
  if (process.env.SDNODE_CACHE_DIR) return process.env.SDNODE_CACHE_DIR;
  if (process.env.XDG_CACHE_HOME) return path.join(process.env.XDG_CACHE_HOME, 'sdnode');
  return path.join(os.homedir(), '.cache', 'sdnode');
}

/** Reads `<cache>/<name>` as a JSON object, or `{}` when it is missing or not valid JSON. */
export async function readRecord<T>(name: string): Promise<Record<string, T>> {
  try {
    const v: unknown = JSON.parse(await fs.promises.readFile(path.join(userCacheDir(), name), 'utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, T>) : {};
  } catch {
    return {};
  }
}

/** Sets `key` in `<cache>/<name>` (read-modify-write, atomic rename). Returns false when it could not be written. */
export async function writeRecord<T>(name: string, key: string, value: T, maxEntries = 200): Promise<boolean> {
  const file = path.join(userCacheDir(), name);
  try {
    const all = await readRecord<T>(name);
    delete all[key];
    all[key] = value;
    const keys = Object.keys(all);
    for (const k of keys.slice(0, Math.max(0, keys.length - maxEntries))) delete all[k]; // oldest first
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await fs.promises.writeFile(tmp, JSON.stringify(all, null, 1));
    await fs.promises.rename(tmp, file);
    return true;
  } catch {
    return false;
  }
}
