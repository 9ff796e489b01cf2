#!/bin/bash
# End-to-end tests: the real mlpipe binary on shipped data and broken inputs.
#
#   MLPIPE=./mlpipe tests/e2e/run.sh [PATTERN]
#
# Sources every tests/e2e/t_*.sh; each defines test_* functions.  Each test
# runs in its own subshell with a fresh temp dir $T and run database $DB,
# from the repository root.  Prints one line per test and a closing
# "N passed, N failed" line; exits non-zero if any failed.
cd "$(dirname "$0")/../.." || exit 2
MLPIPE=${MLPIPE:-./mlpipe}
case "$MLPIPE" in /*) ;; *) MLPIPE="$PWD/$MLPIPE" ;; esac
export MLPIPE
pattern=${1:-}
. tests/e2e/lib.sh

passed=0; failed=0; failures=""
for f in tests/e2e/t_*.sh; do
    . "$f"
done
for t in $(declare -F | awk '{print $3}' | grep '^test_' | sort); do
    [ -n "$pattern" ] && [[ "$t" != *"$pattern"* ]] && continue
    T=$(mktemp -d /tmp/mlpipe-e2e.XXXXXX)
    start=$(date +%s.%N)
    ( set -u; export T DB="$T/runs.db" MLPIPE_ARTIFACTS="$T/artifacts"; unset MLPIPE_DB; "$t" )
    rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1)); echo "ok   $t (${secs}s)"
    else
        failed=$((failed + 1)); failures="$failures $t"; echo "FAIL $t (${secs}s)"
    fi
    rm -rf "$T"
done
[ -n "$failures" ] && echo "failed:$failures"
echo "e2e ($(basename "$MLPIPE")): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
