import { defineConfig } from "vitest/config";

// Every test file opens its own Dawn device on the one software GPU (lavapipe), which already
// spreads each dispatch over all cores: running files in parallel only makes them fight.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
