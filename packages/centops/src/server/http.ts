/** Small HTTP conventions shared by the route plugins: ETags, If-Match, pages. */
import type { FastifyReply } from 'fastify';
import { DmrError } from '@dmr/core';
import type { Page } from '../store/index.js';

/** A resource's ETag is its version, quoted (a strong validator: the version changes with every change). */
export function etag(version: number): string {
  return `"${version}"`;
}

/**
 * The version an `If-Match` header expects. Absent or `*`: no expectation
 * (last writer wins; ADR 0004 says why that is allowed). A list or a weak
 * tag is refused: versions are exact.
 */
export function expectedVersion(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '*') return undefined;
  const match = /^\s*"(\d{1,15})"\s*$/.exec(header);
  if (!match) {
    throw new DmrError('INVALID_ARGUMENT', `If-Match "${header}" is not one ETag such as "3"`, {
      hint: 'send the ETag header of the last GET, quotes included',
    });
  }
  return Number(match[1]);
}

export function sendPage<T>(reply: FastifyReply, page: Page<T>): { items: T[]; next: string | null } {
  void reply;
  return { items: page.items, next: page.nextCursor ?? null };
}
