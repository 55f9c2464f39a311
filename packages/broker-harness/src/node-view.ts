/**
 * What callers see of a harness node, derived from its recorded state: the
 * endpoints to connect to and the files its TLS listener reads. Shared by the
 * harness object and the by-directory operations (control.ts).
 */
import { LOOPBACK, NODE_HOST, type BrokerTlsFiles } from '@dmr/broker';
import { nodeTlsFiles } from './layout.js';
import type { NodePorts } from './ports.js';
import type { NodeState } from './state.js';

export interface BrokerNode {
  name: string;
  nodename: string;
  host: string;
  /** Name to verify the server certificate against (and SNI). */
  servername: string;
  amqpsPort: number;
  amqpsUrl: string;
  managementUrl: string;
  prometheusUrl: string;
  ports: NodePorts;
  logFile: string;
  /** Of the last boot (the start, or the last restartNode). */
  bootMs: number | null;
  pid: number | null;
  /** The files the TLS listener uses: replace them with installBrokerTls to rotate without a restart. */
  tls: BrokerTlsFiles;
  /** The server certificate the harness last installed. */
  certificate: NodeState['certificate'];
}

export function nodeView(node: NodeState, dir: string): BrokerNode {
  return {
    name: node.name,
    nodename: node.nodename,
    host: LOOPBACK,
    servername: NODE_HOST,
    amqpsPort: node.ports.amqps,
    amqpsUrl: `amqps://${NODE_HOST}:${node.ports.amqps}`,
    managementUrl: `http://${LOOPBACK}:${node.ports.management}`,
    prometheusUrl: `http://${LOOPBACK}:${node.ports.prometheus}/metrics`,
    ports: node.ports,
    logFile: node.paths.logFile,
    bootMs: node.bootMs,
    pid: node.beam?.pid ?? null,
    tls: node.tls ?? nodeTlsFiles(dir, node.paths),
    certificate: node.certificate,
  };
}
