/** What every `dmr ctl` command needs: its config and an API client. Option and input helpers: ../../options.ts. */
import type { Command } from 'commander';
import { CentOpsClient } from './client.js';
import { loadCtlConfig, type CtlConfig } from './config.js';

/** `--config` lives on `dmr ctl`; every subcommand sees it through the globals. */
export function ctlConfig(command: Command): Promise<CtlConfig> {
  return loadCtlConfig(command.optsWithGlobals<{ config?: string }>().config);
}

export async function apiClient(command: Command): Promise<CentOpsClient> {
  return CentOpsClient.forApi(await ctlConfig(command));
}

export { collect, positiveInt, readInput, required } from '../../options.js';
