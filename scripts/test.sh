#!/usr/bin/env bash
# `npm test`: installs what is missing, type-checks, runs the whole vitest suite and ends with the
# plain summary line `N passed, N failed[, N skipped]`. Extra arguments go to vitest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh test || exit 1
npx tsc --noEmit -p . || { echo "0 passed, 1 failed"; exit 1; }
report=$(mktemp /tmp/weft-vitest.XXXXXX.json)
trap 'rm -f "$report"' EXIT
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
rc=$?
node scripts/summarize-tests.mjs "$report" || rc=1
exit $rc
