// Prints the closing line CI reads: `N passed, N failed, N skipped`.
import { readFileSync } from 'node:fs';

let report;
try {
  report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch (err) {
  console.log('0 passed, 1 failed');
  console.error(`weft: could not read the vitest report: ${err.message}`);
  process.exit(1);
}
// A test file that failed without any failed test (it did not load, or a hook threw) counts as one failure.
const brokenFiles = report.testResults.filter((f) => f.status === 'failed' && !f.assertionResults.some((a) => a.status === 'failed')).length;
const failed = report.numFailedTests + brokenFiles;
const skipped = report.numPendingTests + (report.numTodoTests ?? 0);
console.log(`${report.numPassedTests} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
