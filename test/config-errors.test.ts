/**
 * Config errors a person can act on (issue 13): "did you mean" for an unknown key, found
 * among the keys the schema allows at that path; the expected type named from the schema
 * instead of zod's `Invalid input`; the allowed values of an enum; YAML syntax errors as
 * FILE:LINE:COL with no dangling colon and no quoted source.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigSyntaxError, ConfigValidationError, parseConfigText } from '../src/config/load.js';
import { closestKey, editDistance } from '../src/config/did-you-mean.js';
import { describeExpectedAt, knownKeysAt } from '../src/config/schema-walk.js';
import { configSchema } from '../src/config/schema.js';
import { configProblems } from './helpers/config-problems.js';

const BASE = {
  subjectToken: { value: 'tok-s3cr3t-value' },
  sts: { url: 'https://sts.example/token' },
  routes: [{ name: 'orders', host: 'orders.internal', upstream: 'https://orders.internal' }],
};

function withRoute(extra: Record<string, unknown>): Record<string, unknown> {
  return { ...BASE, routes: [{ ...BASE.routes[0], ...extra }] };
}

/** The one problem at `path`, failing the test when there is none. */
function problemAt(input: unknown, path: string): string {
  const problems = configProblems(input);
  const hit = problems.find((p) => p.path === path);
  assert.ok(hit, `expected a problem at ${path}, got ${JSON.stringify(problems)}`);
  return hit.problem;
}

describe('did you mean (issue 13)', () => {
  it('an unknown key close to a known one at that level names it', () => {
    assert.equal(problemAt(withRoute({ audiance: 'x' }), 'routes[0].audiance'), 'unknown key (did you mean "audience"?)');
  });

  it('transpositions, case and nested levels: preserveHots, PathPrefix, authorization.heder, limits.maxConnections.proxi', () => {
    assert.match(problemAt(withRoute({ preserveHots: true }), 'routes[0].preserveHots'), /did you mean "preserveHost"/);
    assert.match(problemAt(withRoute({ PathPrefix: '/' }), 'routes[0].PathPrefix'), /did you mean "pathPrefix"/);
    assert.match(problemAt(withRoute({ authorization: { heder: 'x' } }), 'routes[0].authorization.heder'), /did you mean "header"/);
    assert.match(problemAt({ ...BASE, limits: { maxConnections: { proxi: 4 } } }, 'limits.maxConnections.proxi'), /did you mean "proxy"/);
  });

  it('at the top level and inside a discriminated union (clientAuth variants)', () => {
    const { subjectToken, ...rest } = BASE;
    assert.match(problemAt({ ...rest, subjecToken: subjectToken }, 'subjecToken'), /did you mean "subjectToken"/);
    const auth = { ...BASE, sts: { url: 'https://sts.example/token', clientAuth: { method: 'client_secret_post', clientId: 'c', clientSecrt: { value: 'x' } } } };
    assert.match(problemAt(auth, 'sts.clientAuth.clientSecrt'), /did you mean "clientSecret"/);
  });

  it('no suggestion when nothing is close, or when the close key is already there', () => {
    assert.equal(problemAt(withRoute({ colour: 'blue' }), 'routes[0].colour'), 'unknown key');
    assert.equal(problemAt(withRoute({ audience: 'a', audiance: 'b' }), 'routes[0].audiance'), 'unknown key');
  });

  it('the known keys come from the schema, through arrays, prefaults, optionals, records and unions', () => {
    assert.ok(knownKeysAt(configSchema, ['routes', 0]).includes('upstreamProtocol'));
    assert.ok(knownKeysAt(configSchema, ['limits', 'maxConnections']).includes('endpoints'));
    assert.ok(knownKeysAt(configSchema, ['sts', 'clientAuth']).includes('assertionLifetimeSeconds'));
    assert.ok(knownKeysAt(configSchema, ['forward', 'ca']).includes('cert'));
    assert.deepEqual(knownKeysAt(configSchema, ['routes', 0, 'options', 'anything']), []);
    assert.equal(describeExpectedAt(configSchema, ['routes', 0, 'scope']), 'a string or a list of strings');
  });

  it('edit distance counts an adjacent transposition as one edit; short keys get one edit at most', () => {
    assert.equal(editDistance('preservehots', 'preservehost'), 1);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(closestKey('ca', ['cert', 'key']), undefined);
    assert.equal(closestKey('kye', ['cert', 'key']), 'key');
  });
});

describe('type errors name the expected type (issue 13)', () => {
  it('a union: routes[0].scope: expected a string or a list of strings, got a number', () => {
    assert.equal(problemAt(withRoute({ scope: 5 }), 'routes[0].scope'), 'expected a string or a list of strings, got a number');
  });

  it('a list item of the wrong type is reported at the item, not as "neither"', () => {
    assert.equal(problemAt(withRoute({ audience: ['a', 5] }), 'routes[0].audience[1]'), 'expected a string, got a number');
  });

  it('booleans, integers, lists, mappings and an empty value', () => {
    assert.equal(problemAt(withRoute({ lazy: 'yes' }), 'routes[0].lazy'), 'expected true or false, got a string');
    assert.equal(problemAt({ ...BASE, sts: { ...BASE.sts, maxResponseBytes: 2048.5 } }, 'sts.maxResponseBytes'), 'expected an integer, got a number with a fraction');
    assert.equal(problemAt({ ...BASE, routes: 'orders' }, 'routes'), 'expected a list of mappings, got a string');
    assert.equal(problemAt(withRoute({ options: 5 }), 'routes[0].options'), 'expected a mapping, got a number');
    assert.equal(problemAt(withRoute({ audience: null }), 'routes[0].audience'), 'expected a string or a list of strings, got an empty value (null)');
  });

  it('a missing key says it is required and what it takes', () => {
    assert.equal(problemAt(withRoute({ name: undefined }), 'routes[0].name'), 'is required (a string)');
  });

  it('enums and discriminators list the allowed values', () => {
    assert.equal(problemAt(withRoute({ upstreamProtocol: 'h3' }), 'routes[0].upstreamProtocol'), 'must be one of "auto", "http1" or "h2c"');
    assert.equal(
      problemAt({ ...BASE, sts: { ...BASE.sts, clientAuth: { method: 'mtls' } } }, 'sts.clientAuth.method'),
      'must be one of "none", "client_secret_basic", "client_secret_post", "tls_client_auth" or "private_key_jwt"',
    );
    assert.match(problemAt({ ...BASE, sts: { ...BASE.sts, clientAuth: {} } }, 'sts.clientAuth.method'), /^is required: one of "none"/);
  });

  it('bounds in plain words; messages the schema wrote itself are kept', () => {
    assert.equal(problemAt({ ...BASE, sts: { ...BASE.sts, timeoutSeconds: 0 } }, 'sts.timeoutSeconds'), 'must be at least 0.01');
    assert.equal(problemAt({ ...BASE, cache: { refreshBeforeExpiryRatio: 1 } }, 'cache.refreshBeforeExpiryRatio'), 'must be less than 1');
    assert.equal(problemAt(withRoute({ scope: [] }), 'routes[0].scope'), 'must not be empty: give at least one item');
    assert.equal(problemAt({ ...BASE, routes: [] }, 'routes'), 'configure at least one route');
    assert.equal(problemAt(withRoute({ pathPrefix: 'api' }), 'routes[0].pathPrefix'), 'must start with "/"');
  });

  it('no message carries zod\'s own wording or a value the user wrote', () => {
    const input = withRoute({ scope: 's3cr3t-scope-value'.length, lazy: 's3cr3t-lazy', upstreamProtocol: 's3cr3t-proto', audience: [5] });
    const problems = configProblems({ ...input, subjectToken: { value: 12345678901 }, log: { level: 's3cr3t-level' } });
    assert.ok(problems.length >= 5, JSON.stringify(problems));
    for (const p of problems) {
      assert.doesNotMatch(p.problem, /Invalid input|Invalid option|Too small|Too big|received/, p.problem);
      assert.doesNotMatch(p.problem, /s3cr3t|12345678901/, p.problem);
    }
  });
});

describe('YAML syntax errors (issue 13)', () => {
  it('FILE:LINE:COL: what, with no dangling colon and no quoted source', () => {
    const text = 'subjectToken: { value: tok-s3cr3t-value }\nsts:\n  url: [https://sts.example/token\n  x: y: z\n';
    assert.throws(
      () => parseConfigText(text, 'config.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigSyntaxError);
        assert.ok(err instanceof ConfigValidationError, 'a reload handles it like any other invalid config');
        assert.equal(err.code, 'ERR_CONFIG_INVALID');
        assert.match(err.message, /^config\.yaml:\d+:\d+: not valid YAML or JSON: \S/);
        assert.doesNotMatch(err.message, /:\s*$/);
        assert.doesNotMatch(err.message, /\n/);
        assert.doesNotMatch(err.message, /s3cr3t/);
        assert.equal(err.cause, undefined, 'the parser\'s own error quotes the file: it is not kept');
        assert.equal(err.problems.length, 1);
        return true;
      },
    );
  });

  it('the line and column are where the parser stopped', () => {
    const messageOf = (text: string): string => {
      try {
        parseConfigText(text, 'c.yaml');
      } catch (err) {
        assert.ok(err instanceof ConfigSyntaxError);
        return err.message;
      }
      return assert.fail('expected a syntax error');
    };
    assert.equal(messageOf('a: 1\na: 2\n'), 'c.yaml:2:1: not valid YAML or JSON: map keys must be unique');
    assert.equal(messageOf('routes:\n  - name: a\n   host: b\n'), 'c.yaml:3:1: not valid YAML or JSON: sequence item without - indicator');
  });
});
