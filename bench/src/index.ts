/** What other packages may import: the one percentile/summary implementation (the bench itself is main.ts). */
export { percentile, sortedSamples, summarize, type Summary } from '@dmr/core';
