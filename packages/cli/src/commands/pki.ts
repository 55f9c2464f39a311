import { Command } from 'commander';

export function pkiCommand(): Command {
  return new Command('pki').description('certificate authority: keys, CSRs, certificates, revocation, CRLs');
}
