#!/usr/bin/env node
// Thin entry point: everything lives in the compiled package (run `npm run build`).
import { main } from '../dist/main.js';

await main(process.argv);
