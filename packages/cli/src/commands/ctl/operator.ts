/**
 * `dmr ctl operator list | add`: operators as the API knows them, from their
 * certificates (GET /v1/certificates?kind=operator) and issued by an admin
 * (POST /v1/operators/certificates). The API takes a CSR only: with --csr
 * the operator made it and their key never travels; with --key the key is
 * made (0600) or read here, on the admin's machine, and only the CSR is sent.
 * Offline, on the CentOps host: `dmr centops operator add`.
 */
import { access } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { DmrError } from '@dmr/core';
import {
  DEFAULT_KEY_ALGORITHM,
  KEY_ALGORITHMS,
  OPERATOR_ROLES,
  assertCanCreate,
  assertKeyAlgorithm,
  createCsr,
  generatePrivateKey,
  isOperatorRole,
  writeFilesAtomic,
  type IssuedCertificateResponse,
  type PendingFile,
} from '@dmr/pki';
import { action } from '../../action.js';
import { printResult, renderFields } from '../../output.js';
import { apiClient, ctlConfig, readInput, required } from './common.js';
import { trustDomainFor } from './pki.js';
import { renderTable } from '../../output.js';

interface CertificateRecord {
  serial: string;
  id: string;
  role?: string | null;
  notBefore: string;
  notAfter: string;
  revokedAt: string | null;
}

export interface OperatorSummary {
  id: string;
  /** The role of the newest valid certificate; null when none is valid. */
  role: string | null;
  validCertificates: number;
  /** When the newest valid certificate runs out. */
  notAfter: string | null;
  serials: string[];
}

const PAGE = 1000;

/** One line per operator id: a role is a certificate, so an operator is whatever its valid certificates say. */
export function summariseOperators(records: readonly CertificateRecord[], now: Date): OperatorSummary[] {
  const byId = new Map<string, CertificateRecord[]>();
  for (const record of records) byId.set(record.id, [...(byId.get(record.id) ?? []), record]);
  return [...byId.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, certificates]) => {
      const valid = certificates
        .filter((record) => record.revokedAt === null && new Date(record.notAfter) > now)
        .sort((a, b) => (a.notBefore < b.notBefore ? 1 : a.notBefore > b.notBefore ? -1 : 0));
      const newest = valid[0];
      return {
        id,
        role: newest?.role ?? null,
        validCertificates: valid.length,
        notAfter: newest?.notAfter ?? null,
        serials: valid.map((record) => record.serial),
      };
    });
}

function listCommand(): Command {
  return new Command('list')
    .description('operators and their roles, from the operator certificates CentOps issued')
    .option('--all', 'also operators with no valid certificate (revoked or expired)')
    .action(
      action<[{ all?: boolean }]>(async ({ format, command }, options) => {
        const client = await apiClient(command);
        const records: CertificateRecord[] = [];
        let cursor: string | undefined;
        do {
          const page = await client.get<{ items: CertificateRecord[]; next: string | null }>('/v1/certificates', {
            kind: 'operator',
            limit: PAGE,
            cursor,
          });
          records.push(...page.items);
          cursor = page.next ?? undefined;
        } while (cursor !== undefined);
        const operators = summariseOperators(records, new Date()).filter(
          (operator) => options.all === true || operator.validCertificates > 0,
        );
        printResult(format, { items: operators }, (value) =>
          value.items.length === 0
            ? 'no operators'
            : renderTable(
                ['ID', 'ROLE', 'VALID CERTS', 'UNTIL'],
                value.items.map((operator) => [
                  operator.id,
                  operator.role ?? '(none valid)',
                  String(operator.validCertificates),
                  operator.notAfter ?? '-',
                ]),
              ),
        );
      }),
    );
}

interface AddOptions {
  role?: string;
  csr?: string;
  key?: string;
  out?: string;
  ttl?: string;
  algorithm: string;
  trustDomain?: string;
  force?: boolean;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function addCommand(): Command {
  return new Command('add')
    .description('issue an operator certificate with a role (admin only), from the operator’s CSR or a local key')
    .argument('<id>', 'the operator id (the person)')
    .addOption(new Option('--role <role>', 'the role (required)').choices([...OPERATOR_ROLES]))
    .option('--csr <file>', 'a CSR the operator made with their own key (its names must match id and role)')
    .option('--key <file>', 'or: the operator’s private key here, generated (0600) if the file does not exist')
    .option('--out <file>', 'where to write the certificate chain (required)')
    .option('--ttl <duration>', 'certificate lifetime, 1m to 365d (default 90d)')
    .option(
      '--algorithm <algorithm>',
      `key algorithm when generating: ${KEY_ALGORITHMS.join(', ')}`,
      DEFAULT_KEY_ALGORITHM,
    )
    .option('--trust-domain <name>', 'default: the CLI config trustDomain, or that of its operator certificate')
    .option('--force', 'replace an existing --out file')
    .action(
      action<[string, AddOptions]>(async ({ format, command }, id, options) => {
        const role = required(options.role, '--role', 'operator');
        if (!isOperatorRole(role)) throw new DmrError('INVALID_ARGUMENT', `"${role}" is not an operator role`);
        const out = required(options.out, '--out', `${id}.crt`);
        if ((options.csr === undefined) === (options.key === undefined)) {
          throw new DmrError('INVALID_ARGUMENT', 'give exactly one of --csr or --key', {
            hint: `--csr ${id}.csr when the operator made their own key (preferred), --key ${id}.key to make one here`,
          });
        }
        await assertCanCreate(out, options.force === true);
        const pending: PendingFile[] = [];
        let csr: string;
        if (options.csr !== undefined) csr = await readInput(options.csr, 'CSR');
        else {
          const keyPath = options.key ?? '';
          let privateKeyPem: string;
          if (await exists(keyPath)) privateKeyPem = await readInput(keyPath, 'key');
          else {
            assertKeyAlgorithm(options.algorithm);
            privateKeyPem = await generatePrivateKey(options.algorithm);
            pending.push({ path: keyPath, data: privateKeyPem, mode: 0o600 });
          }
          const trustDomain = await trustDomainFor(options.trustDomain, await ctlConfig(command));
          csr = await createCsr({ id, kind: 'operator', role, trustDomain, privateKeyPem });
        }
        const issued = await (
          await apiClient(command)
        ).post<IssuedCertificateResponse>('/v1/operators/certificates', {
          id,
          role,
          csr,
          ...(options.ttl === undefined ? {} : { ttl: options.ttl }),
        });
        pending.push({ path: out, data: issued.chain, mode: 0o644, overwrite: options.force === true });
        await writeFilesAtomic(pending);
        const { serial, notBefore, notAfter } = issued;
        printResult(
          format,
          { id, role, serial, notBefore, notAfter, out, keyGenerated: pending.length === 2 },
          (value) =>
            renderFields([
              ['wrote certificate', value.out],
              ['operator', `${value.id} (${value.role})`],
              ['serial', value.serial],
              ['valid', `${value.notBefore} → ${value.notAfter}`],
              ['key', value.keyGenerated ? `generated in ${options.key ?? ''} (0600)` : undefined],
            ]),
        );
      }),
    );
}

export function operatorCommand(): Command {
  return new Command('operator')
    .description('operators: list them with their roles, issue a certificate with a role (admin only)')
    .addCommand(listCommand())
    .addCommand(addCommand());
}
