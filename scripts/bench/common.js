// Shared by the benchmark scripts: the repository root, the command-line options (--name VALUE) and the per-user
// cache folder where the golden tests keep the random-weight reference checkpoints (SDNODE_CACHE_DIR overrides it).
'use strict';
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..', '..');
const args = process.argv.slice(2);
/** The value after --NAME on the command line, or `def`. */
function opt(name, def) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
/** Whether --NAME is on the command line. */
const flag = (name) => args.includes(`--${name}`);
const cacheRoot = process.env.SDNODE_CACHE_DIR ? path.resolve(process.env.SDNODE_CACHE_DIR) : path.join(os.homedir(), '.cache', 'sdnode');
/** Where test/helpers/golden.ts caches the reference checkpoints, TAESD, ControlNet and CLIP merges. */
const goldenDir = path.join(cacheRoot, 'golden');
/** The shared reference folder (golden inputs, CLIP merges .gz): SDNODE_SHARED_DIR or ../shared next to the checkout. */
const sharedDir = process.env.SDNODE_SHARED_DIR ? path.resolve(process.env.SDNODE_SHARED_DIR) : path.resolve(root, '..', 'shared');

module.exports = { root, args, opt, flag, cacheRoot, goldenDir, sharedDir };
