import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  allPorts,
  blockSize,
  blockSlots,
  CTL_DIST_RANGE,
  isPortFree,
  layoutPorts,
  PORT_RANGE,
  randomBase,
  reservePorts,
  SLOT_SIZE,
} from './ports.js';

describe('port layout', () => {
  it('gives every port of a block one role, inside the block', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 0, max: 500 }), (nodes, slot) => {
        const base = PORT_RANGE.min + slot * SLOT_SIZE;
        const ports = layoutPorts(base, nodes);
        const list = allPorts(ports);
        assert.equal(new Set(list).size, list.length);
        assert.ok(list.every((port) => port >= base && port < base + blockSize(nodes)));
        for (const node of ports.nodes) assert.equal(node.ctlDistMax - node.ctlDistMin + 1, CTL_DIST_RANGE);
      }),
    );
  });

  it('keeps clear of the defaults of the machine’s own RabbitMQ and of the ephemeral range', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 16 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (nodes, fraction) => {
          const base = randomBase(nodes, (max) => Math.floor(fraction * max));
          assert.equal(base % SLOT_SIZE, 0);
          const list = allPorts(layoutPorts(base, nodes));
          assert.ok(list.every((port) => port >= PORT_RANGE.min && port < PORT_RANGE.max && port < 32768));
          for (const taken of [4369, 5671, 5672, 15672, 15692, 25672]) assert.ok(!list.includes(taken));
        },
      ),
    );
  });

  it('locks the slots a block covers, so blocks of different sizes exclude each other', () => {
    assert.deepEqual(blockSlots(20000, 2), [1250, 1251, 1252]);
    assert.deepEqual(blockSlots(20016, 1), [1251, 1252]);
  });

  it('sees a port someone listens on as taken', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    assert.equal(await isPortFree(address.port), false);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    assert.equal(await isPortFree(address.port), true);
  });

  it('never hands out overlapping blocks while reservations are held', async () => {
    const reservations = await Promise.all(Array.from({ length: 6 }, (_, i) => reservePorts((i % 3) + 1)));
    try {
      const seen = reservations.flatMap((reservation) => allPorts(reservation.ports));
      assert.equal(new Set(seen).size, seen.length);
    } finally {
      await Promise.all(reservations.map((reservation) => reservation.release()));
    }
  });
});
