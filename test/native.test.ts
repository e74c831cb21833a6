// Runs the C++ engine tests (native/tests, built as build/bin/sdn_tests) and reports each as a jest test.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const bin = path.resolve(__dirname, '..', 'build', 'bin', process.platform === 'win32' ? 'sdn_tests.exe' : 'sdn_tests');

if (!fs.existsSync(bin)) {
  test('native test runner is built', () => {
    throw new Error(`${bin} is missing: run "npm run build" (npm test does this in its pretest step)`);
  });
} else {
  const names = execFileSync(bin, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  const groups = new Map<string, string[]>();
  for (const n of names) {
    const g = n.split('.')[0];
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(n);
  }
  for (const [group, tests] of groups) {
    describe(`native ${group}`, () => {
      const results = new Map<string, { ok: boolean; ms: number; error: string }>();
      beforeAll(() => {
        const r = spawnSync(bin, ['--json', '--filter', `${group}.`], { encoding: 'utf8', maxBuffer: 64 << 20 });
        for (const line of r.stdout.split('\n')) {
          if (!line.startsWith('{')) continue;
          const o = JSON.parse(line);
          results.set(o.name, o);
        }
        // native tests that cannot run (e.g. ../shared absent) print "SKIP: why" on stderr: show it
        for (const line of (r.stderr || '').split('\n')) {
          if (line.startsWith('SKIP:')) console.warn(`native ${group}: ${line}`);
        }
        if (r.status !== 0 && r.status !== 1) {
          throw new Error(`sdn_tests crashed (status ${r.status}, signal ${r.signal}): ${r.stderr.slice(-2000)}`);
        }
      }, 15 * 60 * 1000);
      for (const name of tests) {
        test(name, () => {
          const r = results.get(name);
          if (!r) throw new Error(`${name} produced no result (the runner stopped before it)`);
          if (!r.ok) throw new Error(r.error);
        });
      }
    });
  }
}
