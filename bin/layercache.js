#!/usr/bin/env -S node --single-threaded-gc
// Runs the TypeScript sources directly through tsx, so the package needs no
// build step before `npx layercache ...`. Garbage collection stays on the
// thread that made the garbage (--single-threaded-gc): docs/worker.md,
// "Garbage collection".
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
