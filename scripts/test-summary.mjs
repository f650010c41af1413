#!/usr/bin/env node
// Prints the plain closing line CI reads, `N passed, N failed`, from vitest's JSON report, so a run that executed
// no test (or never reached vitest) cannot look green. Exits non-zero when nothing passed or anything failed.
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.reports/vitest.json';
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch {
  console.log(`no test report at ${file}: the test run stopped before vitest finished (see the output above)`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
// A file that fails to load fails no test but fails its suite: count it so it cannot pass unnoticed.
const failed = report.numFailedTests || report.numFailedTestSuites || 0;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
