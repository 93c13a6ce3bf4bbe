/**
 * A local declaration of aedes-persistence 11's abstract test suite (`abstract.js`, which ships no types): the
 * conformance tests every aedes persistence must pass, written for `node:test`. Only what its tests use of the test
 * context is declared (see test/unit/persistence.test.ts, which runs them under vitest).
 */
declare module 'aedes-persistence/abstract.js' {
  interface AbstractAssert {
    equal(actual: unknown, expected: unknown, message?: string): void;
    notEqual(actual: unknown, expected: unknown, message?: string): void;
    deepEqual(actual: unknown, expected: unknown, message?: string): void;
    ok(value: unknown, message?: string): void;
  }

  /** The subset of node:test's `TestContext` the suite calls. */
  interface AbstractTestContext {
    plan(count: number): void;
    diagnostic(message: string): void;
    readonly assert: AbstractAssert;
  }

  interface AbstractOptions {
    test(name: string, fn: (t: AbstractTestContext) => Promise<void>): void;
    /** builds a fresh persistence for each test */
    persistence(): unknown;
    /** the persistence has the promise API and gets the broker through `setup(broker)` */
    testAsync?: boolean;
  }

  function abstractPersistence(options: AbstractOptions): void;
  export = abstractPersistence;
}
