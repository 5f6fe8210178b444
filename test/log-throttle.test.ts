import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LogThrottle } from '../src/log/throttle.js';

describe('LogThrottle', () => {
  it('admits the first event per key per window and reports how many it held back', () => {
    const throttle = new LogThrottle(1000);
    assert.equal(throttle.admit('a', 0), 0);
    assert.equal(throttle.admit('a', 10), undefined);
    assert.equal(throttle.admit('a', 999), undefined);
    assert.equal(throttle.admit('b', 500), 0, 'keys are independent');
    assert.equal(throttle.admit('a', 1000), 2);
    assert.equal(throttle.admit('a', 1001), undefined);
    assert.equal(throttle.admit('a', 2500), 1);
  });
});
