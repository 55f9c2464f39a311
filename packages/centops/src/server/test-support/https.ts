/** A small HTTPS client for the API tests and benchmarks: real TLS, optional client certificate. */
import { request as httpsRequest, type Agent } from 'node:https';

export interface Credentials {
  cert: string;
  key: string;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The parsed JSON body (undefined when it is not JSON). */
  json: unknown;
}

export function call(
  url: string,
  options: {
    ca: string;
    method?: string;
    body?: unknown;
    credentials?: Credentials;
    headers?: Record<string, string>;
    /** Default none: a fresh connection per call. A keep-alive agent for benchmarks that measure the server, not TLS. */
    agent?: Agent;
  },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = httpsRequest(
      url,
      {
        method: options.method ?? 'GET',
        ca: options.ca,
        cert: options.credentials?.cert,
        key: options.credentials?.key,
        // By default a fresh connection per call: every call is authenticated from scratch.
        agent: options.agent ?? false,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
