// Runs once per test process before any test file: removes what crashed runs left behind.
import { cleanStale } from "./harness/sandbox.ts";

if (process.getuid?.() === 0) {
  const removed = cleanStale();
  if (removed.length > 0) console.error(`[harness] removed stale test leftovers: ${removed.join(", ")}`);
}

// CNI plugins started by tests record their operations only where a test asks them to (BERTH_CNI_OPLOG)
process.env.BERTH_CNI_OPLOG ??= "";
