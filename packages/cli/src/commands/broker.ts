import { Command } from 'commander';

export function brokerCommand(): Command {
  return new Command('broker').description(
    'start, stop and inspect TLS-only RabbitMQ nodes for tests and the local mesh',
  );
}
