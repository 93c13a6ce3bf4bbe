import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The machine has two cores: integration suites start real brokers, Redis and browsers.
    maxWorkers: 2,
    pool: 'forks',
  },
});
