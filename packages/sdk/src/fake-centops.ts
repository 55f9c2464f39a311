/**
 * Test support (not exported): the two certificate routes of CentOps
 * (packages/centops/src/routes/pki.ts) over HTTPS, signing with a real
 * CertificateAuthority, so enrolment and renewal run the real CSR path.
 * It records request bodies so tests can check no private key was sent.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { csrCommonName, type CertificateAuthority } from '@dmr/pki';

export interface FakeCentOps {
  url: string;
  /** Every JSON body received. */
  bodies: Array<Record<string, unknown>>;
  /** Serials issued, in order. */
  issued: string[];
  close(): Promise<void>;
}

export async function startFakeCentOps(ca: CertificateAuthority, options: { token: string }): Promise<FakeCentOps> {
  const serverIdentity = await ca.issueWithKey({ kind: 'centops', id: 'api', dns: ['localhost'] });
  const bodies: Array<Record<string, unknown>> = [];
  const issued: string[] = [];
  const server: Server = createServer(
    {
      cert: serverIdentity.chainPem,
      key: serverIdentity.privateKeyPem,
      ca: ca.trustBundlePem(),
      requestCert: true,
      rejectUnauthorized: false,
    },
    (request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        void (async () => {
          const reply = (status: number, body: unknown): void => {
            response.writeHead(status, { 'content-type': 'application/json' });
            response.end(JSON.stringify(body));
          };
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
            bodies.push(body);
            const csr = String(body.csr);
            let id: string;
            if (request.url === '/v1/enroll') {
              if (body.token !== options.token) {
                reply(401, { error: { code: 'TOKEN_INVALID', message: 'unknown token', details: {} } });
                return;
              }
              id = csrCommonName(csr);
            } else if (request.url === '/v1/certificates/renew') {
              const socket = request.socket as TLSSocket;
              if (!socket.authorized) {
                reply(401, { error: { code: 'UNAUTHENTICATED', message: 'no client certificate', details: {} } });
                return;
              }
              id = String(socket.getPeerCertificate().subject.CN);
            } else {
              reply(404, { error: { code: 'NOT_FOUND', message: 'no route', details: {} } });
              return;
            }
            const certificate = await ca.issue({ csrPem: csr, kind: 'client', id });
            issued.push(certificate.serial);
            reply(201, {
              id,
              kind: 'client',
              serial: certificate.serial,
              notBefore: certificate.notBefore.toISOString(),
              notAfter: certificate.notAfter.toISOString(),
              fingerprint: certificate.fingerprintSha256,
              certificate: certificate.certificatePem,
              chain: certificate.chainPem,
              trustBundle: ca.trustBundlePem(),
            });
          } catch (error) {
            reply(400, { error: { code: 'CSR_MALFORMED', message: String(error), details: {} } });
          }
        })();
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://localhost:${port}`,
    bodies,
    issued,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
