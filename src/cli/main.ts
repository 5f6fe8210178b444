#!/usr/bin/env node
/**
 * sts-sidecar command line: run | check-config | token | status | inject | dev-sts | demo.
 *
 * The development commands are imported on use, so `run` never loads the reference STS or
 * the demo (issue 11 item 6; test/layering.test.ts checks it).
 */
import { applyRuntimeFlags } from './runtime-flags.js';
import { runCommand } from './run.js';
import { checkConfigCommand } from './check-config.js';
import { tokenCommand } from './token.js';
import { VERSION } from '../version.js';

const USAGE = `sts-sidecar ${VERSION}: exchanges the workload's credential at an STS (RFC 8693) and injects the token

Usage:
  sts-sidecar [run] --config FILE     run the sidecar (or set STS_SIDECAR_CONFIG)
  sts-sidecar check-config [--files] FILE
                                      validate a config file and exit (0 = valid); --files
                                      also opens the certificates, keys and tokens it names
  sts-sidecar token ROUTE --config FILE [--print-token] [--json]
                                      exchange once for ROUTE and print the token's claims
  sts-sidecar status [--admin URL]    show a running sidecar's routes, tokens and identity (0 = ready)
  sts-sidecar inject [options]        the Kubernetes injector webhook, or --file to mutate a manifest
  sts-sidecar dev-sts [options]       run the reference STS for development
  sts-sidecar demo                    run the reference STS, a demo upstream and the sidecar together
  sts-sidecar demo-upstream [options] run only the demo upstream (for the compose demo)
  sts-sidecar demo-token-issuer [...] mint and rotate a projected-style token file (for the compose demo)
  sts-sidecar <command> --help        help for one command
  sts-sidecar --version
`;

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  switch (first) {
    case undefined:
      return runCommand([]);
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case '--version':
    case '-v':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case 'run':
      return runCommand(rest);
    case 'check-config':
      return checkConfigCommand(rest);
    case 'token':
      return tokenCommand(rest);
    case 'status':
      return (await import('./status.js')).statusCommand(rest);
    case 'inject':
      return (await import('./inject.js')).injectCommand(rest);
    case 'dev-sts':
      return (await import('../devsts/cli.js')).runDevStsCommand(rest);
    case 'demo':
      return (await import('./demo.js')).demoCommand(rest);
    case 'demo-upstream':
      return (await import('./demo-upstream.js')).demoUpstreamCommand(rest);
    case 'demo-token-issuer':
      return (await import('./demo-token-issuer.js')).demoTokenIssuerCommand(rest);
    default:
      if (first.startsWith('-')) return runCommand(argv);
      process.stderr.write(`sts-sidecar: unknown command "${first}"\n\n${USAGE}`);
      return 2;
  }
}

applyRuntimeFlags();
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sts-sidecar: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
