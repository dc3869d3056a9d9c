// The undo stack of one ADD: every step that changed something registers how to take it back,
// and a failure unwinds them newest first, so a failed ADD leaves no address and no link behind.

export interface Rollback {
  push(what: string, undo: () => unknown): void;
  /** Runs every undo (newest first), continuing past failures; returns what could not be undone. */
  run(): Promise<string[]>;
}

export function createRollback(): Rollback {
  const steps: Array<{ what: string; undo: () => unknown }> = [];
  return {
    push(what, undo) {
      steps.push({ what, undo });
    },
    async run() {
      const failures: string[] = [];
      for (const step of steps.splice(0).reverse()) {
        try {
          await step.undo();
        } catch (err) {
          failures.push(`failed to ${step.what}: ${(err as Error).message}`);
        }
      }
      return failures;
    },
  };
}
