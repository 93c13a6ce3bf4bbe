import { defineConfig } from 'vitest/config';

// Debian puts the daemons the tests start (mosquitto, nats-server) in /usr/sbin, which is not on every user's PATH.
process.env.PATH = [process.env.PATH, '/usr/sbin', '/sbin'].filter(Boolean).join(':');

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
