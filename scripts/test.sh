#!/usr/bin/env bash
# The whole test suite: set-up, type check, lint, then every test file.
# Ends with the line "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
export PATH="$PWD/node_modules/.bin:$PATH"
failed_checks=0
echo "== build"; bash scripts/build.sh || failed_checks=$((failed_checks+1))
echo "== tsc --noEmit"; tsc --noEmit -p . || failed_checks=$((failed_checks+1))
echo "== tsc --noEmit (ui)"; tsc --noEmit -p ui || failed_checks=$((failed_checks+1))
echo "== biome lint"; biome lint --diagnostic-level=error src test ui || failed_checks=$((failed_checks+1))
out=$(mktemp)
echo "== bun test"
bun test --timeout 120000 "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
pass=$(grep -E '^ *[0-9]+ pass$' "$out" | tail -1 | awk '{print $1}')
fail=$(grep -E '^ *[0-9]+ fail$' "$out" | tail -1 | awk '{print $1}')
skip=$(grep -E '^ *[0-9]+ skip$' "$out" | tail -1 | awk '{print $1}')
# CI shows only the end of the output: repeat each failure's error (the lines bun
# printed just before its "(fail)" line, at most 40, each cut to 400 characters)
if grep -qE '^\(fail\)' "$out"; then
  echo "== failure details"
  awk '/^[0-9]+ tests? failed:$/ { exit }
       /^\((pass|skip|todo)\)/ { n = 0; next }
       /^\(fail\)/ { s = (n > 40) ? n - 40 : 0; for (i = s; i < n; i++) print substr(buf[i], 1, 400); print; print "--"; n = 0; next }
       { buf[n++] = $0 }' "$out" | tail -n 200
fi
rm -f "$out"
pass=${pass:-0}; fail=${fail:-0}; skip=${skip:-0}
# a crashed runner or a failed type check / lint counts as a failure
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
fail=$((fail + failed_checks))
echo "${pass} passed, ${fail} failed, ${skip} skipped"
[ "$fail" -eq 0 ]
