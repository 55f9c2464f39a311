import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { describeLocation, parseLocation } from './location.js';

describe('parseLocation', () => {
  it('takes file paths, sqlite:PATH and :memory: as SQLite', () => {
    assert.deepEqual(parseLocation('centops.db'), { dialect: 'sqlite', path: 'centops.db' });
    assert.deepEqual(parseLocation('/var/lib/dmr/centops.db'), { dialect: 'sqlite', path: '/var/lib/dmr/centops.db' });
    assert.deepEqual(parseLocation('sqlite:data/c.db'), { dialect: 'sqlite', path: 'data/c.db' });
    assert.deepEqual(parseLocation(':memory:'), { dialect: 'sqlite', path: ':memory:' });
  });

  it('takes postgres:// and postgresql:// URLs as PostgreSQL', () => {
    assert.equal(parseLocation('postgres://u@db:5432/centops').dialect, 'postgres');
    assert.equal(parseLocation('postgresql://u@db/centops').dialect, 'postgres');
  });

  it('refuses an empty location and unknown schemes', () => {
    for (const bad of ['', '  ', 'mysql://db/x', 'sqlite:']) {
      assert.throws(
        () => parseLocation(bad),
        (error) => isDmrError(error) && error.code === 'INVALID_ARGUMENT',
        bad,
      );
    }
  });

  it('never shows a password', () => {
    const text = describeLocation(parseLocation('postgres://centops:s3cret@db:5432/centops'));
    assert.ok(!text.includes('s3cret'), text);
    assert.match(text, /PostgreSQL postgres:\/\/centops:\*\*\*@db:5432\/centops/);
  });
});
