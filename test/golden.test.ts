// Golden-image tests: our SD1.x pipeline against the reference engine's images for the random-weight reference
// checkpoint (../shared/golden, see its README). Pass: PSNR >= 40 dB per case (pngcompare.py).
//
// The 2.1 GB checkpoint is generated once with ../shared/golden/make_random_sd15.py into
// $SDNODE_CACHE_DIR/golden or ~/.cache/sdnode/golden, and re-generated only if missing or its sha256 differs from
// the README's; a sidecar stamp (size + mtime + hash) keeps later checks cheap.
// The shared folder is ../shared relative to the repository (override: SDNODE_SHARED_DIR). Without it, or
// without python3 + numpy, the cases are skipped with a visible message.
import * as fs from 'fs';
import * as path from 'path';
import { comparePng, ensureArch, ensureMerges, goldenDir, goldenSkipReason, goldenTargets, outDir, runNativeCli, type GoldenCase } from './helpers/golden';


const reason = goldenSkipReason();
if (reason) {
  // eslint-disable-next-line no-console
  console.warn(reason);
  test.skip(reason, () => undefined);
} else {
  const cases: GoldenCase[] = JSON.parse(fs.readFileSync(path.join(goldenDir, 'cases.json'), 'utf8'));
  // The CPU, then every usable device of the compiled-in GPU backends, software ones (lavapipe) included: these
  // four cases are the ones the Vulkan backend must reproduce in CI (48-131 s each on lavapipe, 2 cores, 353 s for the four).
  const targets = goldenTargets('golden', { softwareByDefault: true });
  describe('golden SD1.x images (PSNR >= 40 dB vs the reference engine)', () => {
    let model = '';
    let merges = '';
    beforeAll(() => {
      model = ensureArch('sd15');
      merges = ensureMerges();
      fs.mkdirSync(outDir, { recursive: true });
    }, 20 * 60 * 1000);

    for (const device of targets) {
      for (const c of cases) {
        const name = device === 'cpu' ? c.id : `${c.id} on ${device}`;
        test(
          name,
          () => {
            const ours = path.join(outDir, device === 'cpu' ? `${c.id}.png` : `${c.id}-${device.replace(':', '')}.png`);
            const args = [
              'generate', '--model', model, '--tokenizer', merges, '--prompt', c.prompt, '--negative', c.negative,
              '--width', String(c.width), '--height', String(c.height), '--steps', String(c.steps),
              '--cfg', String(c.cfg), '--sampler', c.sampler, '--scheduler', c.scheduler, '--seed', String(c.seed),
              '--rng', c.rng, '--clip-skip', String(c.clip_skip), '--device', device, '--output', ours,
            ];
            const secs = runNativeCli(args);
            // eslint-disable-next-line no-console
            console.log(`${name}: ${comparePng(ours, c.id)} (${secs.toFixed(1)} s)`);
          },
          20 * 60 * 1000,
        );
      }
    }
  });
}
