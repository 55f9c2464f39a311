// @peculiar/x509 resolves its algorithm plug-ins through tsyringe, which
// throws at import time unless a Reflect metadata polyfill is loaded first.
// Every module in this package imports the library through this file so the
// polyfill is always evaluated before it, whichever module is loaded first.
import 'reflect-metadata';

export * from '@peculiar/x509';
