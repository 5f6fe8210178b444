/**
 * `${VAR}` substitution in config files (issue 13): values only, defaults, the `$$` escape, and
 * an unset variable reported at the key that uses it, never with a value.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigValidationError, parseConfigText } from '../src/config/load.js';

const config = (sts: string, extra = '') => `
sts:
  url: ${sts}
subjectToken:
  file: /var/run/secrets/tokens/sts-token
routes:
  - name: orders
    host: orders.internal
    upstream: http://127.0.0.1:9000
    audience:
      - \${AUDIENCE:-orders}
      - "literal $$HOME and a lone $ sign"
${extra}`;

function problemsOf(fn: () => unknown): Array<{ path: string; problem: string }> {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigValidationError, String(err));
    return [...err.problems];
  }
  assert.fail('expected a ConfigValidationError');
}

describe('environment substitution in config files', () => {
  it('replaces ${VAR} and ${VAR:-default} in string values; $$ is a literal $, a lone $ stays', () => {
    const c = parseConfigText(config('${STS_URL}'), 'test', { STS_URL: 'https://sts.example/token' });
    assert.equal(c.sts.url.href, 'https://sts.example/token');
    assert.deepEqual(c.routes[0]!.audience, ['orders', 'literal $HOME and a lone $ sign']);
    const set = parseConfigText(config('${STS_URL}'), 'test', { STS_URL: 'https://sts.example/token', AUDIENCE: 'payments' });
    assert.deepEqual(set.routes[0]!.audience, ['payments', 'literal $HOME and a lone $ sign']);
  });

  it('a value is data, never YAML: a variable holding ": " or "#" does not change the structure', () => {
    const c = parseConfigText(config('https://sts.example/token', 'log:\n  level: ${LEVEL}'), 'test', { LEVEL: 'debug' });
    assert.equal(c.log.level, 'debug');
    const odd = problemsOf(() => parseConfigText(config('https://sts.example/token', 'log:\n  level: ${LEVEL}'), 'test', { LEVEL: 'info\nrouteS: x # y' }));
    assert.deepEqual(odd.map((p) => p.path), ['log.level']);
  });

  it('an unset variable without a default is a problem at its key path, every one reported, no value shown', () => {
    const problems = problemsOf(() => parseConfigText(config('${STS_URL}', 'admin:\n  listen: ${ADMIN_LISTEN}'), 'test', { UNRELATED: 's3cr3t-value' }));
    assert.deepEqual(problems.map((p) => p.path), ['sts.url', 'admin.listen']);
    assert.match(problems[0]!.problem, /STS_URL is not set/);
    assert.ok(problems.every((p) => !p.problem.includes('s3cr3t')));
  });

  it('a malformed reference is a problem, not a silent literal', () => {
    const problems = problemsOf(() => parseConfigText(config('https://sts.example/token', 'log:\n  level: "${not a name}"'), 'test', {}));
    assert.deepEqual(problems.map((p) => p.path), ['log.level']);
    const unclosed = problemsOf(() => parseConfigText(config('"https://sts.example/${PATH_PART"'), 'test', {}));
    assert.deepEqual(unclosed.map((p) => p.path), ['sts.url']);
  });
});
