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
const failed = report.numFailedTests + (report.numFailedTestSuites ?? 0) - countSuitesWithFailedTests(report);
const skipped = report.numPendingTests + (report.numTodoTests ?? 0);
console.log(`${report.numPassedTests} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);

// A suite that failed to load counts as one failure; a suite whose tests failed is already counted.
function countSuitesWithFailedTests(r) {
  return r.testResults.filter((s) => s.status === 'failed' && s.assertionResults.some((a) => a.status === 'failed')).length;
}
