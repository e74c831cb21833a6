/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: { strict: true, esModuleInterop: true, lib: ['ES2022', 'ESNext.Disposable'], types: ['node', 'jest'] }, diagnostics: { warnOnly: false } }],
  },
  // Native suites and pipeline cases are CPU-heavy: the machine has few cores, so run files one at a time.
  maxWorkers: 1,
  testTimeout: 120000,
  verbose: true,
};
