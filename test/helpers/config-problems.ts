/** The problems the real config validation reports for `input`; none when it is valid. */
import assert from 'node:assert/strict';
import { ConfigValidationError, parseConfig, type ConfigProblem } from '../../src/config/load.js';

export function configProblems(input: unknown): readonly ConfigProblem[] {
  try {
    parseConfig(input);
  } catch (err) {
    assert.ok(err instanceof ConfigValidationError, `expected ConfigValidationError, got ${String(err)}`);
    return err.problems;
  }
  return [];
}
