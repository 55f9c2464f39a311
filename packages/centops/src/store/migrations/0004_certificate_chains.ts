/**
 * The issued certificate itself, beside its record: the PEM chain
 * (leaf then CentOps' intermediate) of client and node certificates, so
 * CentOps can serve a client's current certificate to its peers for
 * end-to-end protection (`GET /v1/directory/clients/:id/certificate`).
 * A certificate is public data; no key is ever stored.
 *
 * Rows recorded before this migration have no chain (null): the directory
 * serves nothing for them until the holder renews. Both dialects can add a
 * nullable column in place, so no table rebuild is needed.
 */
import { sql, type Kysely, type Migration } from 'kysely';

export function certificateChainsMigration(): Migration {
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`alter table certificates add column chain_pem text`.execute(db);
      // The directory asks for one principal's certificates, newest first.
      await db.schema
        .createIndex('certificates_by_subject_validity')
        .on('certificates')
        .columns(['principal_kind', 'principal_id', 'not_before'])
        .execute();
    },
  };
}
