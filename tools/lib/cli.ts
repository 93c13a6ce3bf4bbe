/** The small command-line plumbing the soak and fuzz tools share. */

/** A flag's value as a whole number ≥ 0, or a readable error naming the flag. */
export function whole(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${flag}: expected a whole number, got "${text}"`);
  return n;
}

/** Runs `main` and exits with its code; an error (bad flags, a start that failed) prints it with `usage`, exit 2. */
export function runMain(main: () => Promise<number>, usage: string): void {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      console.error(usage);
      process.exit(2);
    },
  );
}
