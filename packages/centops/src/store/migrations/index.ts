/**
 * The in-code migration provider. Names sort in the order they run; a
 * database that has run a name missing here was migrated by a newer CentOps.
 */
import type { Migration, MigrationProvider } from 'kysely';
import type { Dialect } from '../location.js';
import { initialMigration } from './0001_initial.js';
import { operatorCertificatesMigration } from './0002_operator_certificates.js';
import { policiesMigration } from './0003_policies.js';
import { certificateChainsMigration } from './0004_certificate_chains.js';
import { identityRevocationMigration } from './0005_identity_revocation.js';
import { auditLogsMigration } from './0006_audit_logs.js';

export function migrationsFor(dialect: Dialect): Record<string, Migration> {
  return {
    '0001_initial': initialMigration(dialect),
    '0002_operator_certificates': operatorCertificatesMigration(dialect),
    '0003_policies': policiesMigration(dialect),
    '0004_certificate_chains': certificateChainsMigration(),
    '0005_identity_revocation': identityRevocationMigration(dialect),
    '0006_audit_logs': auditLogsMigration(dialect),
  };
}

export class InCodeMigrationProvider implements MigrationProvider {
  constructor(private readonly dialect: Dialect) {}

  getMigrations(): Promise<Record<string, Migration>> {
    return Promise.resolve(migrationsFor(this.dialect));
  }
}
