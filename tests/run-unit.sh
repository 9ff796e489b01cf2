#!/bin/sh
# Runs each cmocka test binary given as an argument; fails if any fails.
# Prints one closing line "N passed, N failed" over all binaries.
passed=0; failed=0
for t in "$@"; do
    if "$t"; then passed=$((passed + 1)); else echo "FAILED: $t" >&2; failed=$((failed + 1)); fi
done
echo "unit test binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
