export * from './atomic-file.js';
export * from './authority.js';
export { CA_FILES, type CaState, type IssuedRecord, type Revocation } from './ca-store.js';
export { normaliseSerial, parseCertificates, randomSerial, sha256Hex } from './certificates.js';
export * from './crl.js';
export { checkCsr, createCsr, type CheckedCsr, type CsrExpectation, type CsrOptions } from './csr.js';
export * from './keys.js';
export { canonicalDnsName, canonicalIp, checkHostNames, type HostNames } from './names.js';
export * from './inspect.js';
