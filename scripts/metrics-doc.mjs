#!/usr/bin/env node
// Writes docs/metrics.md from the compiled metrics classes (packages/cli/src/metrics-doc.ts). Run after `tsc -b`.
import { writeFile } from 'node:fs/promises';
import { URL } from 'node:url';
import { METRICS_DOC, renderMetricsDoc } from '../packages/cli/dist/metrics-doc.js';

const file = new URL(`../${METRICS_DOC}`, import.meta.url);
await writeFile(file, renderMetricsDoc());
console.log(`wrote ${METRICS_DOC}`);
