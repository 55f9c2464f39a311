/**
 * `dmr ctl …`: the operator CLI for a running CentOps, over its mTLS API.
 * `--config` (or DMR_CONFIG, or ~/.dmr/config.yaml) says where CentOps is
 * and which operator certificate to present; see config.ts.
 */
import { Command } from 'commander';
import { applyCommands } from './apply.js';
import { denylistCommand } from './denylist.js';
import { operatorCommand } from './operator.js';
import { pkiCommands } from './pki.js';
import { policyCommands } from './policy.js';
import { registryCommands } from './registry.js';
import { statusCommand } from './status.js';

export function ctlCommand(): Command {
  const ctl = new Command('ctl')
    .description(
      'operate a running CentOps: registry, apply/export, tokens, certificates, denylist, operators, node status',
    )
    .option(
      '--config <file>',
      'CLI config (endpoint, CA bundle, client certificate); default $DMR_CONFIG or ~/.dmr/config.yaml',
    );
  for (const command of [
    ...registryCommands(),
    ...applyCommands(),
    ...pkiCommands(),
    policyCommands(),
    denylistCommand(),
    operatorCommand(),
    statusCommand(),
  ]) {
    ctl.addCommand(command);
  }
  return ctl;
}
