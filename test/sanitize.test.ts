// The sanitizer lane inside `npm test`: builds the engine and the native test runner with ASan + UBSan
// (build-sanitize/, incremental after the first run) and runs every native test plus the corrupt-file corpus and the
// fuzz seeds/regressions under them (scripts/sanitize.js; also `npm run test:sanitize`). Any sanitizer report fails.
// SDNODE_SKIP_SANITIZE=1 skips it, visibly, for quick local runs; CI never sets it.
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { runSanitizeLane } = require(path.join(__dirname, '..', 'scripts', 'sanitize.js')) as {
  runSanitizeLane: (o: { log: (m: string) => void }) => {
    ok: boolean;
    failures: string[];
    buildMs: number;
    testMs: number;
    nativeSummary: string;
    corpusFiles: number;
  };
};

const skip = process.env.SDNODE_SKIP_SANITIZE === '1';
if (skip) console.warn('sanitize.test.ts: SKIPPED because SDNODE_SKIP_SANITIZE=1 (the ASan+UBSan lane did not run)');

(skip ? test.skip : test)(
  `ASan + UBSan: native tests, corrupt-file corpus and fuzz inputs without a report${skip ? ' (SKIPPED: SDNODE_SKIP_SANITIZE=1)' : ''}`,
  () => {
    const r = runSanitizeLane({ log: () => {} });
    console.log(
      `sanitizer lane: native ${r.nativeSummary}, ${r.corpusFiles} corpus files; build ${(r.buildMs / 1000).toFixed(0)} s, run ${(r.testMs / 1000).toFixed(0)} s`,
    );
    expect(r.failures).toEqual([]);
    expect(r.nativeSummary).toMatch(/^\d+ passed, 0 failed$/);
  },
  40 * 60 * 1000,
);
