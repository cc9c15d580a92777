#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx, so the package needs no
// build step before `npx layercache ...`.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
