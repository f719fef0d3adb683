/**
 * An undo stack for multi-step setup: push an undo after each step succeeds;
 * on failure `rollback` runs them in reverse, collecting (not throwing) errors so
 * every undo gets its chance.
 */
export class UndoStack {
  private readonly steps: { what: string; undo: () => Promise<void> | void }[] = [];

  push(what: string, undo: () => Promise<void> | void): void {
    this.steps.push({ what, undo });
  }

  async rollback(): Promise<Error[]> {
    const errors: Error[] = [];
    while (this.steps.length > 0) {
      const s = this.steps.pop()!;
      try {
        await s.undo();
      } catch (e) {
        errors.push(new Error(`rollback of ${s.what} failed: ${(e as Error).message}`));
      }
    }
    return errors;
  }

  /** Forget the undos (setup committed). */
  commit(): void {
    this.steps.length = 0;
  }
}
