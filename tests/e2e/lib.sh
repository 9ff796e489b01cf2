# Helpers for the end-to-end tests (sourced by tests/e2e/run.sh).
#
# Each test_* function runs the real binary ($MLPIPE) from the repository
# root against a fresh run database in $T (a temp dir) and asserts on exit
# codes, stderr text and the rows written to the database.  A failed
# assertion prints what was expected and what happened and returns 1.

# run_ml ARGS...: runs mlpipe, capturing stdout/stderr/exit code.
run_ml() {
    "$MLPIPE" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    return 0
}

fail() {
    echo "    FAIL: $*" >&2
    echo "    --- stderr:" >&2; sed 's/^/    | /' "$T/err" >&2 2>/dev/null | head -20
    return 1
}

expect_exit() {
    [ "$RC" -eq "$1" ] || fail "expected exit $1, got $RC"
}

expect_err() {   # fixed-string match on stderr
    grep -qF -- "$1" "$T/err" || fail "stderr lacks: $1"
}

expect_out() {
    grep -qF -- "$1" "$T/out" || fail "stdout lacks: $1"
}

# sql_eq QUERY EXPECTED: the query's output (sqlite3 -batch) equals EXPECTED.
sql_eq() {
    got=$(sqlite3 -batch "$DB" "$1" 2>&1)
    [ "$got" = "$2" ] || fail "sql '$1': expected '$2', got '$got'"
}

# sql_ge QUERY MIN: numeric output >= MIN.
sql_ge() {
    got=$(sqlite3 -batch "$DB" "$1" 2>&1)
    awk -v g="$got" -v m="$2" 'BEGIN { exit !(g != "" && g + 0 >= m + 0) }' \
        || fail "sql '$1': expected >= $2, got '$got'"
}

# write_yaml FILE <<EOF ... : a pipeline file in $T.
write_yaml() { cat >"$T/$1"; }
