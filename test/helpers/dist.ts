// The compiled CLI (dist/), rebuilt with tsc when missing or older than lib/ (as test/cli.test.ts does).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { repoRoot } from './tiny';

export const cliPath = path.join(repoRoot, 'dist', 'cli', 'cli.js');

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ if it is missing or stale. */
export function ensureDist(): void {
  if (fs.existsSync(cliPath) && fs.statSync(cliPath).mtimeMs >= newestMtime(path.join(repoRoot, 'lib'))) return;
  const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(repoRoot, 'tsconfig.json')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}\n${r.stderr}`);
}
