/**
 * Finds the machine's RabbitMQ. The Debian wrapper /usr/sbin/rabbitmq-server
 * switches to the `rabbitmq` user and reads the system's settings, so the
 * harness runs the scripts inside the versioned server directory directly
 * (which works as root, as on CI).
 */
import { accessSync, constants, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DmrError } from '@dmr/core';

export interface RabbitmqInstall {
  version: string;
  sbinDir: string;
  server: string;
  ctl: string;
  epmd: string;
}

export const DEFAULT_RABBITMQ_LIB = '/usr/lib/rabbitmq/lib';
export const DEFAULT_ERLANG_BIN = '/usr/lib/erlang/bin';

const INSTALL_HINT =
  'install RabbitMQ and Erlang: `apt-get install rabbitmq-server` (Debian/Ubuntu); ' +
  'the harness runs /usr/lib/rabbitmq/lib/rabbitmq_server-<version>/sbin/* directly';

/** Numeric version order, so 3.10.8 sorts after 3.9.29. */
export function compareVersions(a: string, b: string): number {
  const left = a.split('.').map(Number);
  const right = b.split('.').map(Number);
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function locateRabbitmq(libDir = DEFAULT_RABBITMQ_LIB, erlangBin = DEFAULT_ERLANG_BIN): RabbitmqInstall {
  let entries: string[];
  try {
    entries = readdirSync(libDir);
  } catch {
    entries = [];
  }
  const versions = entries
    .map((entry) => /^rabbitmq_server-(\d+(?:\.\d+)*)$/.exec(entry)?.[1])
    .filter((version): version is string => version !== undefined)
    .sort(compareVersions);
  const version = versions[versions.length - 1];
  if (version === undefined) {
    throw new DmrError('DEPENDENCY_MISSING', `RabbitMQ is not installed (no ${libDir}/rabbitmq_server-*)`, {
      hint: INSTALL_HINT,
      details: { libDir },
    });
  }
  const sbinDir = join(libDir, `rabbitmq_server-${version}`, 'sbin');
  const install: RabbitmqInstall = {
    version,
    sbinDir,
    server: join(sbinDir, 'rabbitmq-server'),
    ctl: join(sbinDir, 'rabbitmqctl'),
    epmd: join(erlangBin, 'epmd'),
  };
  for (const program of [install.server, install.ctl, install.epmd]) {
    if (!isExecutable(program)) {
      throw new DmrError('DEPENDENCY_MISSING', `${program} is missing or not executable`, {
        hint: INSTALL_HINT,
        details: { program },
      });
    }
  }
  return install;
}
