/**
 * Subject alternative names: syntax checks for what operators type, a
 * canonical text form so a name from a CSR and one from the command line
 * compare equal, and the profile rule that only DMR nodes carry DNS/IP SANs.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import { SubjectAlternativeName, type GeneralName } from '@peculiar/asn1-x509';
import { DmrError, type PrincipalKind } from '@dmr/core';
import { leafUsage, type CertificateSubject } from './profiles.js';

export interface HostNames {
  dns: string[];
  ips: string[];
}

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Lowercases a DNS name and checks it is a plain host name: no wildcard, no trailing dot, no IP address. */
export function canonicalDnsName(name: string): string {
  const lower = name.trim().toLowerCase();
  const problem =
    lower.length === 0
      ? 'is empty'
      : lower.length > 253
        ? 'is longer than 253 characters'
        : lower.includes('*')
          ? 'is a wildcard (DMR certificates name exact hosts)'
          : isIPv4(lower) || isIPv6(lower)
            ? 'is an IP address'
            : lower.split('.').every((label) => DNS_LABEL.test(label))
              ? undefined
              : 'is not a host name (labels of a-z, 0-9 and "-", separated by ".")';
  if (problem !== undefined) {
    throw new DmrError('INVALID_ARGUMENT', `DNS name "${name}" ${problem}`, {
      details: { dns: name },
      hint:
        problem === 'is an IP address' ? 'pass IP addresses with --ip' : 'e.g. --dns localhost --dns broker.example.ee',
    });
  }
  return lower;
}

/** The 4 or 16 bytes of an IP address, or undefined when `text` is not one (zone ids such as `%eth0` included). */
export function ipToBytes(text: string): Uint8Array | undefined {
  if (isIPv4(text)) return Uint8Array.from(text.split('.').map(Number));
  if (!isIPv6(text) || text.includes('%')) return undefined;
  // An embedded dotted quad (::ffff:10.0.0.1) becomes two hex groups first.
  const hexOnly = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a: string, b: string, c: string, d: string) =>
    [(Number(a) << 8) | Number(b), (Number(c) << 8) | Number(d)].map((group) => group.toString(16)).join(':'),
  );
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const gap = hexOnly.indexOf('::');
  const head = parse(gap === -1 ? hexOnly : hexOnly.slice(0, gap));
  const rest = gap === -1 ? [] : parse(hexOnly.slice(gap + 2));
  const groups = gap === -1 ? head : [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  if (groups.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

/**
 * RFC 5952 text for IPv6 (lowercase, longest zero run as "::"), dotted quad
 * for IPv4. IPv4-mapped addresses stay in hex groups: the SAN encoder of
 * @peculiar/asn1-x509 misreads a dotted tail inside an IPv6 address.
 */
export function ipFromBytes(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) return undefined;
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1; // a single zero group is not compressed (RFC 5952 4.2.2)
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (list: number[]) => list.map((group) => group.toString(16)).join(':');
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

export function canonicalIp(text: string): string {
  const bytes = ipToBytes(text.trim());
  const canonical = bytes && ipFromBytes(bytes);
  if (canonical === undefined) {
    throw new DmrError('INVALID_ARGUMENT', `"${text}" is not an IP address`, {
      details: { ip: text },
      hint: 'write an IPv4 address like 127.0.0.1 or an IPv6 address like ::1 (no zone id); host names go in --dns',
    });
  }
  return canonical;
}

/**
 * Checks the host names requested for a certificate against the profile:
 * clients are identified by their URI SAN alone, so a client certificate
 * that also names hosts could be used to impersonate a server.
 */
export function checkHostNames(
  kindOrSubject: PrincipalKind | CertificateSubject,
  dns: readonly string[] = [],
  ips: readonly string[] = [],
): HostNames {
  const subject = typeof kindOrSubject === 'string' ? { kind: kindOrSubject, id: 'x' } : kindOrSubject;
  const kind = subject.kind;
  if (!leafUsage(subject).hosts && dns.length + ips.length > 0) {
    throw new DmrError('SAN_NOT_ALLOWED', `a ${kind} certificate cannot carry DNS or IP names`, {
      details: { kind, dns, ips },
      hint: 'only node certificates name hosts; drop --dns/--ip or issue with --kind node',
    });
  }
  return {
    dns: [...new Set(dns.map(canonicalDnsName))],
    ips: [...new Set(ips.map(canonicalIp))],
  };
}

/** SAN entries as DMR reads them; `other` lists entry types DMR never issues (e-mail, directory names…). */
export interface SanEntries {
  dns: string[];
  ips: string[];
  uris: string[];
  other: string[];
}

/** Reads a subjectAltName extension value without the high-level parser, which throws on otherName entries. */
export function readSanExtension(value: ArrayBuffer): SanEntries {
  const names: GeneralName[] = AsnConvert.parse(value, SubjectAlternativeName);
  const entries: SanEntries = { dns: [], ips: [], uris: [], other: [] };
  for (const name of names) {
    if (name.dNSName !== undefined) entries.dns.push(name.dNSName.toLowerCase());
    else if (name.uniformResourceIdentifier !== undefined) entries.uris.push(name.uniformResourceIdentifier);
    else if (name.iPAddress !== undefined) {
      // asn1-x509 hands the address over as text (or as "a.b.c.d/n" for odd lengths); re-canonicalise ours.
      const bytes = ipToBytes(name.iPAddress);
      entries.ips.push((bytes && ipFromBytes(bytes)) ?? name.iPAddress);
    } else if (name.rfc822Name !== undefined) entries.other.push(`email:${name.rfc822Name}`);
    else if (name.directoryName !== undefined) entries.other.push('directoryName');
    else if (name.registeredID !== undefined) entries.other.push(`registeredID:${name.registeredID}`);
    else entries.other.push('otherName');
  }
  return entries;
}
