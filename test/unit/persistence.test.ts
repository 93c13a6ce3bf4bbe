/**
 * DevicePersistence (the embedded broker's aedes persistence) against aedes-persistence's own abstract test suite:
 * the conformance tests every aedes persistence must pass, written for node:test and run here under vitest through a
 * small adapter for the test context (`plan`, `diagnostic`, `assert`). That the broker really uses it, and that clean
 * sessions leave no queue behind, is proven in test/integration/embedded-broker.test.ts.
 */
import assert from 'node:assert';
import abstractPersistence from 'aedes-persistence/abstract.js';
import { describe, expect, it } from 'vitest';
import { DevicePersistence } from '../../src/transport/persistence.ts';

/** node:test's test context as the suite uses it: counts assertions against `plan`, like node:test does. */
function testContext() {
  let planned: number | undefined;
  let count = 0;
  const counted =
    <Args extends unknown[]>(check: (...args: Args) => void) =>
    (...args: Args) => {
      count += 1;
      check(...args);
    };
  return {
    context: {
      plan: (n: number) => {
        planned = n;
      },
      diagnostic: () => undefined,
      // node:test exposes node:assert's top-level (legacy) functions on `t.assert`
      assert: {
        equal: counted(assert.equal),
        notEqual: counted(assert.notEqual),
        deepEqual: counted(assert.deepEqual),
        ok: counted(assert.ok),
      },
    },
    checkPlan: () => {
      if (planned !== undefined) expect(count, 'assertions made against t.plan()').toBe(planned);
    },
  };
}

describe("aedes-persistence's abstract suite against DevicePersistence", () => {
  abstractPersistence({
    test: (name, fn) =>
      it(name, async () => {
        const { context, checkPlan } = testContext();
        await fn(context);
        checkPlan();
      }),
    persistence: () => new DevicePersistence(),
    testAsync: true,
  });
});
