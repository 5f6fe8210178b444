/**
 * Issue 10 item 19: `routes[].host` is a host name or IP address with an optional port.
 * Anything else (a scheme, a path, a space, a wildcard) used to be accepted and then
 * matched nothing while /readyz said ready; now the config is refused naming the key.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { configProblems } from './helpers/config-problems.js';
import { parseConfig } from '../src/config/load.js';

function withHost(host: unknown): Record<string, unknown> {
  return {
    subjectToken: { file: '/var/run/secrets/token' },
    sts: { url: 'https://sts.example.com/token' },
    routes: [
      { name: 'first', host: 'first.internal', upstream: 'https://first.internal' },
      { name: 'orders', host, upstream: 'https://orders.internal' },
    ],
  };
}


describe('issue 10 item 19: routes[].host', () => {
  const refused: Array<[string, string, RegExp?]> = [
    ['a scheme', 'http://orders.internal', /no scheme/],
    ['an https scheme with a port', 'https://orders.internal:8443', /no scheme/],
    ['a path', 'orders.internal/api', /no path: use pathPrefix/],
    ['a trailing slash', 'orders.internal/', /no path/],
    ['a space inside', 'Orders Internal', /host name or IP address/],
    ['a tab inside', 'orders\tinternal'],
    ['a leading wildcard', '*.example.internal', /wildcards are not supported/],
    ['a wildcard label', 'orders.*.internal', /wildcards/],
    ['an empty string', ''],
    ['port 0', 'orders.internal:0'],
    ['a port past 65535', 'orders.internal:70000'],
    ['an empty port', 'orders.internal:'],
    ['userinfo', 'user@orders.internal'],
    ['an empty label', 'orders..internal'],
    ['a label starting with a hyphen', '-orders.internal'],
    ['a bare IPv6 address (brackets needed to tell it from a port)', '::1'],
    ['brackets around something that is not IPv6', '[orders.internal]:443'],
    ['a query', 'orders.internal?x=1'],
    ['a percent-encoded name', 'orders%2einternal'],
  ];
  for (const [what, host, message] of refused) {
    test(`refused with the key path: ${what} (${JSON.stringify(host)})`, () => {
      const problems = configProblems(withHost(host));
      assert.deepEqual(problems.map((p) => p.path), ['routes[1].host'], JSON.stringify(problems));
      if (message) assert.match(problems[0]!.problem, message);
    });
  }

  const accepted: Array<[string, string, string]> = [
    ['a name', 'orders.internal', 'orders.internal'],
    ['a single-label name', 'orders', 'orders'],
    ['a name, lower-cased', 'Orders.Internal', 'orders.internal'],
    ['name:port', 'orders.internal:8443', 'orders.internal:8443'],
    ['IPv4', '10.0.0.7', '10.0.0.7'],
    ['IPv4:port', '127.0.0.1:8080', '127.0.0.1:8080'],
    ['[IPv6]', '[fd00::7]', '[fd00::7]'],
    ['[IPv6]:port', '[::1]:8443', '[::1]:8443'],
    ['a trailing dot (fully qualified), dropped', 'orders.internal.', 'orders.internal'],
    ['a trailing dot before a port, dropped', 'orders.internal.:8443', 'orders.internal:8443'],
    ['underscores and hyphens (service names)', '_grpc.orders-v2.internal', '_grpc.orders-v2.internal'],
  ];
  for (const [what, host, normalised] of accepted) {
    test(`accepted: ${what} (${JSON.stringify(host)})`, () => {
      assert.deepEqual(configProblems(withHost(host)), []);
      const routes = parseConfig(withHost(host)).routes;
      assert.equal(routes[1]!.host, normalised);
    });
  }
});
