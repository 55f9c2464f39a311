/**
 * Readiness as a client sees it. `rabbitmqctl await_startup` succeeds even
 * when the TLS listener failed to start, so the harness also completes a
 * mutual-TLS handshake (with the node's own certificate, which the CA made a
 * client certificate too) and waits for the AMQP connection.start frame: that
 * proves the listener, the server certificate, the trust bundle and the CRL
 * lookup all work.
 */
import { connect } from 'node:tls';
import { LOOPBACK, NODE_HOST } from './connect.js';

export interface TlsProbeOptions {
  port: number;
  host?: string;
  servername?: string;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  timeoutMs?: number;
}

export interface TlsProbeResult {
  ok: boolean;
  protocol?: string;
  /** Node's error code, e.g. ECONNREFUSED or ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED. */
  code?: string;
  message?: string;
}

/** "AMQP" 0 0 9 1: the protocol header a 0-9-1 client opens with. */
export const AMQP_091_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);
const FRAME_METHOD = 1;

export function probeTls(options: TlsProbeOptions): Promise<TlsProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: TlsProbeResult): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(result);
    };
    const socket = connect(
      {
        host: options.host ?? LOOPBACK,
        port: options.port,
        servername: options.servername ?? NODE_HOST,
        ca: options.caPem,
        cert: options.certificatePem,
        key: options.privateKeyPem,
      },
      () => {
        // With TLS 1.3 the server judges the client certificate only after this
        // point, so a refusal arrives as an alert instead of the first frame.
        socket.write(AMQP_091_HEADER);
      },
    );
    socket.setTimeout(options.timeoutMs ?? 3000, () =>
      finish({ ok: false, code: 'ETIMEDOUT', message: 'no AMQP connection.start within the timeout' }),
    );
    socket.once('data', (chunk: Buffer) => {
      if (chunk[0] === FRAME_METHOD) finish({ ok: true, protocol: socket.getProtocol() ?? undefined });
      else finish({ ok: false, code: 'EPROTO', message: 'the listener did not answer with an AMQP frame' });
    });
    socket.on('error', (error: NodeJS.ErrnoException) =>
      finish({ ok: false, code: error.code, message: error.message.split('\n')[0] }),
    );
    socket.on('close', () => finish({ ok: false, code: 'ECONNRESET', message: 'connection closed before any frame' }));
  });
}
