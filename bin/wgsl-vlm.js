#!/usr/bin/env node
// The command-line entry: runs the compiled CLI (npm install/ci builds dist/ through `prepare`).
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("wgsl-vlm: dist/ is missing; run `npm run build` (or `npm ci`, which builds) first\n");
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
