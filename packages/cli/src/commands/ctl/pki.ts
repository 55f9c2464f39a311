/**
 * `dmr ctl token create` and `dmr ctl cert request | renew | revoke`.
 *
 * Keys are made and kept where they are used: `cert request` and `cert
 * renew` build the CSR locally with @dmr/pki and send only the CSR; the
 * key file is read (or generated, 0600) here and never leaves this process.
 */
import { access } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { DmrError, assertPrincipalKind, type PrincipalKind } from '@dmr/core';
import {
  DEFAULT_KEY_ALGORITHM,
  KEY_ALGORITHMS,
  REVOCATION_REASONS,
  ROLE_URN_PREFIX,
  assertCanCreate,
  assertKeyAlgorithm,
  assertRevocationReason,
  createCsr,
  generatePrivateKey,
  inspectCertificate,
  isOperatorRole,
  writeFilesAtomic,
  type CertificateKind,
  type IssuedCertificateResponse,
  type OperatorRole,
  type PendingFile,
} from '@dmr/pki';
import { action } from '../../action.js';
import { printResult, renderFields } from '../../output.js';
import { CentOpsClient } from './client.js';
import { apiClient, collect, ctlConfig, readInput, required } from './common.js';
import type { CtlConfig } from './config.js';
import { readConfigFile } from './config.js';

/** What the CLI shows of an issued certificate (the PEM went to --out). */
function issuedSummary(issued: IssuedCertificateResponse, out: string) {
  const { id, kind, serial, notBefore, notAfter, fingerprint } = issued;
  return { id, kind, serial, notBefore, notAfter, fingerprint, out };
}

function renderIssued(value: ReturnType<typeof issuedSummary>): string {
  return renderFields([
    ['wrote certificate', value.out],
    ['identity', `${value.kind} ${value.id}`],
    ['serial', value.serial],
    ['valid', `${value.notBefore} → ${value.notAfter}`],
    ['sha256', value.fingerprint],
  ]);
}

interface SpiffeIdentity {
  trustDomain: string;
  kind: CertificateKind;
  id: string;
}

/** The identity in a certificate's first spiffe:// URI SAN, including operators (core's parser knows mesh kinds only). */
function spiffeOf(uris: readonly string[]): SpiffeIdentity | undefined {
  for (const uri of uris) {
    const match = /^spiffe:\/\/([^/]+)\/(client|node|operator|centops)\/([^/]+)$/.exec(uri);
    if (match) return { trustDomain: match[1] ?? '', kind: match[2] as CertificateKind, id: match[3] ?? '' };
  }
  return undefined;
}

/**
 * The trust domain a CSR must name: --trust-domain, else the config's
 * trustDomain, else the one in the config's operator certificate (an
 * operator enrolling a device on its behalf has one).
 */
export async function trustDomainFor(option: string | undefined, config: CtlConfig): Promise<string> {
  if (option !== undefined) return option;
  if (config.trustDomain !== undefined) return config.trustDomain;
  if (config.clientCertificate !== undefined) {
    const report = await inspectCertificate(await readConfigFile(config, 'clientCertificate'));
    const identity = spiffeOf(report.san.uri);
    if (identity !== undefined) return identity.trustDomain;
  }
  throw new DmrError('INVALID_ARGUMENT', 'the trust domain is not known', {
    hint: 'pass --trust-domain dmr.example.ee, or add trustDomain to the CLI config',
  });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function tokenCommand(): Command {
  const create = new Command('create')
    .description('create a one-time, expiring bootstrap token for a registered client or node (printed once)')
    .option('--id <id>', 'the client or node it enrols (required)')
    .addOption(
      new Option('--kind <kind>', 'client or node (default: looked up in the registry)').choices(['client', 'node']),
    )
    .option('--ttl <duration>', 'lifetime, at most 7d', '1h')
    .action(
      action<[{ id?: string; kind?: PrincipalKind; ttl: string }]>(async ({ format, command }, options) => {
        const id = required(options.id, '--id', 'police-bot');
        const token = await (
          await apiClient(command)
        ).post<{ token: string; ref: string; id: string; kind: string; expiresAt: string }>('/v1/tokens', {
          id,
          ...(options.kind === undefined ? {} : { kind: options.kind }),
          ttl: options.ttl,
        });
        printResult(format, token, (value) =>
          renderFields([
            ['token', value.token],
            ['for', `${value.kind} ${value.id}`],
            ['expires', value.expiresAt],
            ['ref', value.ref],
          ]),
        );
      }),
    );
  return new Command('token').description('one-time enrolment (bootstrap) tokens').addCommand(create);
}

interface RequestOptions {
  token?: string;
  id?: string;
  kind?: string;
  key?: string;
  out?: string;
  algorithm: string;
  trustDomain?: string;
  dns: string[];
  ip: string[];
  enrolEndpoint?: string;
  force?: boolean;
}

function requestCommand(): Command {
  return new Command('request')
    .description('enrol: make a CSR with a local key and exchange it and a bootstrap token for a certificate')
    .option('--token <token>', 'the one-time token from `dmr ctl token create` (required)')
    .option('--id <id>', 'the client or node id to enrol (required)')
    .option('--kind <kind>', 'client or node (required)')
    .option('--key <file>', 'private key; generated (0600) if the file does not exist (required)')
    .option('--out <file>', 'where to write the certificate chain (required)')
    .option(
      '--algorithm <algorithm>',
      `key algorithm when generating: ${KEY_ALGORITHMS.join(', ')}`,
      DEFAULT_KEY_ALGORITHM,
    )
    .option('--trust-domain <name>', 'default: the CLI config trustDomain, or that of its operator certificate')
    .option('--dns <name>', 'node: a DNS name of its certificate profile; repeat for several', collect, [])
    .option('--ip <address>', 'node: an IP address of its certificate profile; repeat for several', collect, [])
    .option('--enrol-endpoint <url>', 'default: enrolEndpoint of the CLI config')
    .option('--force', 'replace an existing --out file')
    .action(
      action<[RequestOptions]>(async ({ format, command }, options) => {
        const token = required(options.token, '--token', 'dmrbt_…');
        const id = required(options.id, '--id', 'police-bot');
        const kind = required(options.kind, '--kind', 'client');
        assertPrincipalKind(kind);
        const keyPath = required(options.key, '--key', 'police-bot.key');
        const out = required(options.out, '--out', 'police-bot.crt');
        assertKeyAlgorithm(options.algorithm);
        const config = await ctlConfig(command);
        const trustDomain = await trustDomainFor(options.trustDomain, config);
        const client = await CentOpsClient.forEnrolment(config, options.enrolEndpoint);
        await assertCanCreate(out, options.force === true);

        const pending: PendingFile[] = [];
        let privateKeyPem: string;
        if (await exists(keyPath)) privateKeyPem = await readInput(keyPath, 'key');
        else {
          privateKeyPem = await generatePrivateKey(options.algorithm);
          pending.push({ path: keyPath, data: privateKeyPem, mode: 0o600 });
        }
        const csr = await createCsr({ id, kind, trustDomain, privateKeyPem, dns: options.dns, ips: options.ip });
        // Only the CSR (public key + names, signed by the key) and the token leave this process.
        const issued = await client.post<IssuedCertificateResponse>('/v1/enroll', { token, csr });
        pending.push({ path: out, data: issued.chain, mode: 0o644, overwrite: options.force === true });
        await writeFilesAtomic(pending);
        printResult(format, { ...issuedSummary(issued, out), keyGenerated: pending.length === 2 }, renderIssued);
      }),
    );
}

interface RenewOptions {
  key?: string;
  cert?: string;
  out?: string;
  force?: boolean;
}

function renewCommand(): Command {
  return new Command('renew')
    .description('renew a certificate, proving the identity with the current one (mTLS with --cert/--key)')
    .option('--key <file>', 'the private key of the current certificate; the new one certifies the same key (required)')
    .option('--cert <file>', 'the current, still valid certificate chain (required)')
    .option('--out <file>', 'where to write the new chain (required; may be --cert with --force)')
    .option('--force', 'replace an existing --out file')
    .action(
      action<[RenewOptions]>(async ({ format, command }, options) => {
        const keyPath = required(options.key, '--key', 'police-bot.key');
        const certPath = required(options.cert, '--cert', 'police-bot.crt');
        const out = required(options.out, '--out', 'police-bot.new.crt');
        await assertCanCreate(out, options.force === true);
        const [key, cert] = await Promise.all([readInput(keyPath, 'key'), readInput(certPath, 'certificate')]);
        const report = await inspectCertificate(cert);
        const identity = spiffeOf(report.san.uri);
        if (identity === undefined || identity.kind === 'centops') {
          throw new DmrError(
            'CERTIFICATE_INVALID',
            `${certPath} names no client, node or operator (no spiffe:// URI SAN)`,
          );
        }
        let role: OperatorRole | undefined;
        if (identity.kind === 'operator') {
          const urn = report.san.uri.find((uri) => uri.startsWith(ROLE_URN_PREFIX))?.slice(ROLE_URN_PREFIX.length);
          if (urn === undefined || !isOperatorRole(urn)) {
            throw new DmrError('CERTIFICATE_INVALID', `${certPath} is an operator certificate without a role`);
          }
          role = urn;
        }
        // The CSR repeats the current certificate's names: renewal keeps the identity, it never changes it.
        const csr = await createCsr({
          id: identity.id,
          kind: identity.kind,
          role,
          trustDomain: identity.trustDomain,
          privateKeyPem: key,
          dns: report.san.dns,
          ips: report.san.ip,
        });
        const client = await CentOpsClient.forApi(await ctlConfig(command), { cert, key });
        const issued = await client.post<IssuedCertificateResponse>('/v1/certificates/renew', { csr });
        await writeFilesAtomic([{ path: out, data: issued.chain, mode: 0o644, overwrite: options.force === true }]);
        printResult(format, issuedSummary(issued, out), renderIssued);
      }),
    );
}

function revokeCommand(): Command {
  return new Command('revoke')
    .description('revoke a certificate: its serial goes on the CRL, a client or node on the denylist')
    .option('--serial <serial>', 'certificate serial, hex (required)')
    .addOption(new Option('--reason <reason>', 'revocation reason (required)').choices([...REVOCATION_REASONS]))
    .action(
      action<[{ serial?: string; reason?: string }]>(async ({ format, command }, options) => {
        const serial = required(options.serial, '--serial', '4f1c…');
        const reason = required(options.reason, '--reason', 'keyCompromise');
        assertRevocationReason(reason);
        const revoked = await (
          await apiClient(command)
        ).post<{ serial: string; kind: string; id: string; reason: string; denylisted: boolean }>(
          `/v1/certificates/${encodeURIComponent(serial)}/revoke`,
          { reason },
        );
        printResult(format, revoked, (value) =>
          renderFields([
            ['revoked', value.serial],
            ['identity', `${value.kind} ${value.id}`],
            ['reason', value.reason],
            ['denylisted', value.denylisted ? 'yes (nodes refuse it from the next revision)' : 'no'],
          ]),
        );
      }),
    );
}

export function pkiCommands(): Command[] {
  const cert = new Command('cert')
    .description('certificates: enrol with a token, renew, revoke')
    .addCommand(requestCommand())
    .addCommand(renewCommand())
    .addCommand(revokeCommand());
  return [tokenCommand(), cert];
}
