import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Kernel tests create namespaces with distinct names and can run side by side, but the
    // machine has two cores: keep the pool small so timing-sensitive tests stay honest.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
