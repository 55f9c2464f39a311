import { resolve } from 'node:path';
import { Command } from 'commander';
import { DmrError, assertPrincipalKind, formatDuration, parseDuration, spiffeId, type PrincipalKind } from '@dmr/core';
import {
  CA_FILES,
  CertificateAuthority,
  DEFAULT_CRL_NEXT_UPDATE_MS,
  DEFAULT_INTERMEDIATE_TTL_MS,
  DEFAULT_KEY_ALGORITHM,
  DEFAULT_LEAF_TTL_MS,
  DEFAULT_ROOT_TTL_MS,
  KEY_ALGORITHMS,
  REVOCATION_REASONS,
  assertCanCreate,
  assertKeyAlgorithm,
  assertRevocationReason,
  checkHostNames,
  createCsr,
  crlNumberOf,
  generatePrivateKey,
  inspectCertificate,
  parseCrls,
  writeFilesAtomic,
  type CertificateReport,
  type IssuedCertificate,
  type PendingFile,
} from '@dmr/pki';
import { action } from '../action.js';
import { readInput, required } from '../options.js';
import { printResult, renderFields } from '../output.js';
import { recordStatus, renderRecords, renderReport } from './pki-render.js';

/** Commander collector for options that may be given several times (--dns a --dns b). */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function kindOption(value: string | undefined): PrincipalKind {
  const kind = required(value, '--kind', 'client');
  assertPrincipalKind(kind);
  return kind;
}

/** Output files are checked before any work and written together at the end, so a failure leaves none behind. */
async function prepareOutputs(files: PendingFile[]): Promise<void> {
  const paths = files.map((file) => resolve(file.path));
  if (new Set(paths).size !== paths.length) {
    throw new DmrError('INVALID_ARGUMENT', 'two outputs point at the same file', { details: { paths } });
  }
  for (const file of files) await assertCanCreate(file.path, file.overwrite);
}

const iso = (date: Date) => date.toISOString();

interface InitOptions {
  dir?: string;
  trustDomain?: string;
  rootTtl: string;
  intermediateTtl: string;
}

function initCommand(): Command {
  return new Command('init')
    .description('create a two-level CA (root + issuing intermediate, ECDSA P-256) in a new directory')
    .option('--dir <dir>', 'directory for the CA files (required; created 0700, must not hold a CA yet)')
    .option('--trust-domain <name>', 'SPIFFE trust domain of the mesh, e.g. dmr.example.ee (required)')
    .option('--root-ttl <duration>', 'root certificate lifetime (units d/h/m/s)', formatDuration(DEFAULT_ROOT_TTL_MS))
    .option(
      '--intermediate-ttl <duration>',
      'intermediate certificate lifetime (units d/h/m/s)',
      formatDuration(DEFAULT_INTERMEDIATE_TTL_MS),
    )
    .action(
      action<[InitOptions]>(async ({ format }, options) => {
        const dir = required(options.dir, '--dir', '.dmr/pki');
        const trustDomain = required(options.trustDomain, '--trust-domain', 'dmr.example.ee');
        const ca = await CertificateAuthority.init(dir, {
          trustDomain,
          rootTtlMs: parseDuration(options.rootTtl),
          intermediateTtlMs: parseDuration(options.intermediateTtl),
        });
        const [root, intermediate] = await Promise.all([
          inspectCertificate(ca.rootCertificatePem),
          inspectCertificate(ca.intermediateCertificatePem),
        ]);
        const result = {
          dir: ca.dir,
          trustDomain: ca.trustDomain,
          root: { subject: root.subject, notAfter: root.notAfter, fingerprintSha256: root.fingerprintSha256 },
          intermediate: { subject: intermediate.subject, notAfter: intermediate.notAfter },
          trustBundle: `${ca.dir}/${CA_FILES.rootCertificate}`,
        };
        printResult(format, result, (value) =>
          renderFields([
            ['created CA', value.dir],
            ['trust domain', value.trustDomain],
            ['root', `${value.root.subject}, valid until ${iso(value.root.notAfter)}`],
            ['root sha256', value.root.fingerprintSha256],
            ['intermediate', `${value.intermediate.subject}, valid until ${iso(value.intermediate.notAfter)}`],
            ['trust bundle', value.trustBundle],
          ]),
        );
      }),
    );
}

interface KeygenOptions {
  out?: string;
  algorithm: string;
  force?: boolean;
}

function keygenCommand(): Command {
  return new Command('keygen')
    .description('generate a private key (PKCS#8 PEM, file mode 0600) where it will be used')
    .option('--out <file>', 'where to write the key (required)')
    .option('--algorithm <algorithm>', `one of ${KEY_ALGORITHMS.join(', ')}`, DEFAULT_KEY_ALGORITHM)
    .option('--force', 'replace an existing file')
    .action(
      action<[KeygenOptions]>(async ({ format }, options) => {
        const out = required(options.out, '--out', 'police-bot.key');
        assertKeyAlgorithm(options.algorithm);
        const file: PendingFile = { path: out, data: '', mode: 0o600, overwrite: options.force === true };
        await prepareOutputs([file]);
        file.data = await generatePrivateKey(options.algorithm);
        await writeFilesAtomic([file]);
        printResult(format, { out, algorithm: options.algorithm, mode: '0600' }, (value) =>
          renderFields([
            ['wrote key', value.out],
            ['algorithm', value.algorithm],
            ['mode', value.mode],
          ]),
        );
      }),
    );
}

interface CsrOptions {
  id?: string;
  kind?: string;
  key?: string;
  trustDomain?: string;
  dns: string[];
  ip: string[];
  out?: string;
  force?: boolean;
}

function csrCommand(): Command {
  return new Command('csr')
    .description('make a certificate signing request for a principal, signed by its own key')
    .option('--id <id>', 'principal id, becomes the subject CN (required)')
    .option('--kind <kind>', 'client or node (required)')
    .option('--key <file>', 'private key file, e.g. from `dmr pki keygen` (required)')
    .option('--trust-domain <name>', 'trust domain for the spiffe:// URI SAN (required)')
    .option('--dns <name>', 'DNS name SAN, nodes only; repeat for several', collect, [])
    .option('--ip <address>', 'IP address SAN, nodes only; repeat for several', collect, [])
    .option('--out <file>', 'where to write the CSR (required)')
    .option('--force', 'replace an existing file')
    .action(
      action<[CsrOptions]>(async ({ format }, options) => {
        const id = required(options.id, '--id', 'police-bot');
        const kind = kindOption(options.kind);
        const keyPath = required(options.key, '--key', 'police-bot.key');
        const trustDomain = required(options.trustDomain, '--trust-domain', 'dmr.example.ee');
        const out = required(options.out, '--out', 'police-bot.csr');
        const hosts = checkHostNames(kind, options.dns, options.ip);
        const file: PendingFile = { path: out, data: '', mode: 0o644, overwrite: options.force === true };
        await prepareOutputs([file]);
        file.data = await createCsr({
          id,
          kind,
          trustDomain,
          privateKeyPem: await readInput(keyPath, 'key'),
          dns: hosts.dns,
          ips: hosts.ips,
        });
        await writeFilesAtomic([file]);
        const result = { out, subject: `CN=${id}`, spiffeId: spiffeId(trustDomain, kind, id), ...hosts };
        printResult(format, result, (value) =>
          renderFields([
            ['wrote CSR', value.out],
            ['subject', value.subject],
            ['spiffe id', value.spiffeId],
            ['dns names', value.dns.join(', ') || undefined],
            ['ip addresses', value.ips.join(', ') || undefined],
          ]),
        );
      }),
    );
}

interface IssueOptions {
  dir?: string;
  csr?: string;
  kind?: string;
  id?: string;
  dns: string[];
  ip: string[];
  ttl: string;
  out?: string;
  force?: boolean;
  generateKey?: boolean;
  keyOut?: string;
  keyAlgorithm: string;
}

function issueCommand(): Command {
  return new Command('issue')
    .description('sign a CSR: writes the certificate chain (leaf + intermediate) as PEM')
    .option('--dir <dir>', 'CA directory (required)')
    .option('--csr <file>', 'the CSR to sign (required unless --generate-key)')
    .option('--kind <kind>', 'client or node (required)')
    .option('--id <id>', 'principal id; must equal the CSR subject CN (required)')
    .option('--dns <name>', 'DNS name SAN, nodes only; repeat for several', collect, [])
    .option('--ip <address>', 'IP address SAN, nodes only; repeat for several', collect, [])
    .option('--ttl <duration>', 'certificate lifetime (units d/h/m/s)', formatDuration(DEFAULT_LEAF_TTL_MS))
    .option('--out <file>', 'where to write the chain PEM (required)')
    .option('--force', 'replace existing output files')
    .option('--generate-key', 'DEVELOPMENT ONLY: generate the private key here instead of signing a CSR')
    .option('--key-out <file>', 'DEVELOPMENT ONLY: with --generate-key, where to write the key (0600)')
    .option(
      '--key-algorithm <algorithm>',
      `DEVELOPMENT ONLY: with --generate-key, one of ${KEY_ALGORITHMS.join(', ')}`,
      DEFAULT_KEY_ALGORITHM,
    )
    .action(
      action<[IssueOptions]>(async ({ format }, options) => {
        const dir = required(options.dir, '--dir', '.dmr/pki');
        const kind = kindOption(options.kind);
        const id = required(options.id, '--id', 'police-bot');
        const out = required(options.out, '--out', `${id}.crt`);
        const ttlMs = parseDuration(options.ttl);
        const generate = options.generateKey === true;
        if (generate === (options.csr !== undefined)) {
          throw new DmrError('INVALID_ARGUMENT', 'give either --csr FILE or --generate-key --key-out FILE', {
            hint: 'production keys are made where they are used: dmr pki keygen, then dmr pki csr',
          });
        }
        if (!generate && options.keyOut !== undefined) {
          throw new DmrError('INVALID_ARGUMENT', '--key-out only goes with --generate-key');
        }
        const overwrite = options.force === true;
        const chainFile: PendingFile = { path: out, data: '', mode: 0o644, overwrite };
        const keyFile: PendingFile | undefined = generate
          ? { path: required(options.keyOut, '--key-out', `${id}.key`), data: '', mode: 0o600, overwrite }
          : undefined;
        const keyAlgorithm = options.keyAlgorithm;
        assertKeyAlgorithm(keyAlgorithm);
        const files = keyFile ? [keyFile, chainFile] : [chainFile];
        await prepareOutputs(files);

        const ca = await CertificateAuthority.open(dir);
        const request = { kind, id, dns: options.dns, ips: options.ip, ttlMs };
        let issued: IssuedCertificate;
        if (keyFile) {
          const withKey = await ca.issueWithKey({ ...request, keyAlgorithm });
          keyFile.data = withKey.privateKeyPem;
          issued = withKey;
        } else {
          issued = await ca.issue({ ...request, csrPem: await readInput(options.csr ?? '', 'CSR') });
        }
        chainFile.data = issued.chainPem;
        await writeFilesAtomic(files);

        const result = {
          out,
          ...(keyFile ? { keyOut: keyFile.path } : {}),
          serial: issued.serial,
          fingerprintSha256: issued.fingerprintSha256,
          spiffeId: spiffeId(ca.trustDomain, kind, id),
          notBefore: issued.notBefore,
          notAfter: issued.notAfter,
        };
        printResult(format, result, (value) =>
          renderFields([
            ['wrote chain', value.out],
            ['wrote key', value.keyOut],
            ['spiffe id', value.spiffeId],
            ['serial', value.serial],
            ['sha256', value.fingerprintSha256],
            ['not before', iso(value.notBefore)],
            ['not after', iso(value.notAfter)],
          ]),
        );
      }),
    );
}

interface RevokeOptions {
  dir?: string;
  serial?: string;
  reason?: string;
}

function revokeCommand(): Command {
  return new Command('revoke')
    .description('revoke an issued certificate; publish it with `dmr pki crl` afterwards')
    .option('--dir <dir>', 'CA directory (required)')
    .option('--serial <serial>', 'serial as printed by `dmr pki issue` or `dmr pki list` (required)')
    .option('--reason <reason>', `one of ${REVOCATION_REASONS.join(', ')} (required)`)
    .action(
      action<[RevokeOptions]>(async ({ format }, options) => {
        const dir = required(options.dir, '--dir', '.dmr/pki');
        const serial = required(options.serial, '--serial', '<hex serial>');
        const reason = required(options.reason, '--reason', 'keyCompromise');
        assertRevocationReason(reason);
        const ca = await CertificateAuthority.open(dir);
        await ca.revoke(serial, reason);
        const record = await ca.findIssued(serial);
        const result = {
          serial: record?.serial ?? serial,
          kind: record?.kind,
          id: record?.id,
          reason,
          revokedAt: record?.revoked?.at,
        };
        printResult(format, result, (value) =>
          [
            renderFields([
              ['revoked', value.serial],
              ['principal', value.kind && value.id ? `${value.kind} ${value.id}` : undefined],
              ['reason', value.reason],
              ['at', value.revokedAt ? iso(value.revokedAt) : undefined],
            ]),
            `next: publish a new CRL with dmr pki crl --dir ${dir} --out <file>`,
          ].join('\n'),
        );
      }),
    );
}

interface CrlCommandOptions {
  dir?: string;
  out?: string;
  nextUpdate: string;
}

function crlCommand(): Command {
  return new Command('crl')
    .description('write a fresh CRL signed by the intermediate (replaces the file: CRLs are republished)')
    .option('--dir <dir>', 'CA directory (required)')
    .option('--out <file>', 'where to write the CRL PEM (required; an older CRL there is replaced)')
    .option(
      '--next-update <duration>',
      'when the next CRL is due (units d/h/m/s)',
      formatDuration(DEFAULT_CRL_NEXT_UPDATE_MS),
    )
    .action(
      action<[CrlCommandOptions]>(async ({ format }, options) => {
        const dir = required(options.dir, '--dir', '.dmr/pki');
        const out = required(options.out, '--out', 'crl.pem');
        const nextUpdateMs = parseDuration(options.nextUpdate);
        const file: PendingFile = { path: out, data: '', mode: 0o644, overwrite: true };
        await prepareOutputs([file]);
        const ca = await CertificateAuthority.open(dir);
        file.data = await ca.createCrl({ nextUpdateMs });
        await writeFilesAtomic([file]);
        const [crl] = parseCrls(file.data.toString());
        if (!crl) throw new DmrError('INTERNAL', 'the CRL just made cannot be read back');
        const result = {
          out,
          crlNumber: crlNumberOf(crl),
          revoked: crl.entries.length,
          thisUpdate: crl.thisUpdate,
          nextUpdate: crl.nextUpdate,
        };
        printResult(format, result, (value) =>
          renderFields([
            ['wrote CRL', value.out],
            ['crl number', value.crlNumber],
            ['revoked', value.revoked],
            ['this update', value.thisUpdate ? iso(value.thisUpdate) : undefined],
            ['next update', value.nextUpdate ? iso(value.nextUpdate) : undefined],
          ]),
        );
      }),
    );
}

interface InspectCommandOptions {
  dir?: string;
  trustBundle?: string;
  intermediate: string[];
  crl: string[];
  check?: boolean;
}

function inspectCommand(): Command {
  return new Command('inspect')
    .description('show a certificate: subject, SANs, validity, fingerprint, chain and revocation status')
    .argument('<file>', 'certificate or chain PEM (certificates after the first are used as intermediates)')
    .option('--dir <dir>', 'CA directory: trust its bundle and intermediate, and its records for revocation')
    .option('--trust-bundle <file>', 'PEM file of trusted roots (instead of --dir)')
    .option('--intermediate <file>', 'extra intermediate certificate PEM; repeat for several', collect, [])
    .option('--crl <file>', 'CRL PEM to check revocation against; repeat for several', collect, [])
    .option(
      '--check',
      'exit non-zero (CERTIFICATE_INVALID) unless the chain verifies and the certificate is not revoked',
    )
    .action(
      action<[string, InspectCommandOptions]>(async ({ format }, file, options) => {
        if (options.dir !== undefined && options.trustBundle !== undefined) {
          throw new DmrError('INVALID_ARGUMENT', 'give --dir or --trust-bundle, not both');
        }
        const pem = await readInput(file, 'certificate');
        const ca = options.dir === undefined ? undefined : await CertificateAuthority.open(options.dir);
        const trustBundlePem =
          ca?.trustBundlePem() ??
          (options.trustBundle === undefined ? undefined : await readInput(options.trustBundle, 'trust bundle'));
        const intermediatePems = [
          ...(ca ? [ca.intermediateCertificatePem] : []),
          ...(await Promise.all(options.intermediate.map((path) => readInput(path, 'intermediate')))),
        ];
        const crlPems = await Promise.all(options.crl.map((path) => readInput(path, 'CRL')));
        const report: CertificateReport = await inspectCertificate(pem, {
          ...(trustBundlePem === undefined ? {} : { trustBundlePem }),
          intermediatePems,
          crlPems,
        });
        if (ca && crlPems.length === 0) {
          // No CRL given, but the CA's own records know the truth for what it issued.
          const record = (await ca.listIssued()).find((item) => item.fingerprintSha256 === report.fingerprintSha256);
          if (record) {
            Object.assign(report, {
              revocation: record.revoked ? 'revoked' : 'good',
              revocationSource: 'ca-records',
              ...(record.revoked ? { revocationReason: record.revoked.reason, revokedAt: record.revoked.at } : {}),
            });
            delete report.revocationProblem;
          }
        }
        printResult(format, report, renderReport);
        if (options.check && (!report.chain.verified || report.revocation === 'revoked')) {
          throw new DmrError(
            'CERTIFICATE_INVALID',
            report.revocation === 'revoked'
              ? `${file} is revoked (${report.revocationReason ?? 'unspecified'})`
              : `${file} does not verify: ${report.chain.problem ?? 'unknown problem'}`,
            { details: { serial: report.serial } },
          );
        }
      }),
    );
}

interface ListOptions {
  dir?: string;
}

function listCommand(): Command {
  return new Command('list')
    .description('list the certificates a CA has issued, with their status')
    .option('--dir <dir>', 'CA directory (required)')
    .action(
      action<[ListOptions]>(async ({ format }, options) => {
        const ca = await CertificateAuthority.open(required(options.dir, '--dir', '.dmr/pki'));
        const records = await ca.listIssued();
        printResult(
          format,
          records.map((record) => ({ ...record, status: recordStatus(record) })),
          () => renderRecords(records),
        );
      }),
    );
}

export function pkiCommand(): Command {
  return new Command('pki')
    .description('certificate authority: keys, CSRs, certificates, revocation, CRLs')
    .addCommand(initCommand())
    .addCommand(keygenCommand())
    .addCommand(csrCommand())
    .addCommand(issueCommand())
    .addCommand(revokeCommand())
    .addCommand(crlCommand())
    .addCommand(inspectCommand())
    .addCommand(listCommand());
}
