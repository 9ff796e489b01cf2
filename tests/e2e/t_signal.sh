# Signals: a run interrupted by SIGTERM/SIGINT stops at a safe point, keeps
# the metrics so far, is recorded as killed, and exits 143/130.

# long_run SIGNAL: starts a long training, sends SIGNAL after its first epochs.
long_run() {
    "$MLPIPE" run examples/plugins/randhie-log1p.yaml --db "$DB" --plugin examples/plugins/log1p.so \
        --set train.epochs=100000 --set train.tol=0 >"$T/out" 2>"$T/err" &
    local pid=$! i=0
    # wait until some epochs are recorded
    while [ $i -lt 100 ]; do
        n=$(sqlite3 -batch "$DB" "SELECT count(*) FROM metrics WHERE key = 'train.loss'" 2>/dev/null)
        [ "${n:-0}" -ge 2 ] && break
        sleep 0.2; i=$((i + 1))
    done
    local t0=$(date +%s.%N)
    kill -"$1" $pid
    wait $pid
    RC=$?
    ELAPSED=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
}

test_sigterm_marks_run_killed() {
    long_run TERM
    expect_exit 143 || return 1
    awk -v e="$ELAPSED" 'BEGIN { exit !(e < 1.5) }' || fail "took ${ELAPSED}s to stop" || return 1
    sql_eq "SELECT status, exit_code FROM runs" "killed|143" || return 1
    sql_ge "SELECT count(*) FROM metrics WHERE key = 'train.loss'" 2 || return 1
    sql_eq "SELECT status FROM stages WHERE kind = 'train'" "killed" || return 1
    [ -z "$(ls "$T/artifacts" 2>/dev/null)" ] || fail "a killed run left artifacts" || return 1
    sql_eq "PRAGMA integrity_check" "ok" || return 1
}

test_sigint_exit_130() {
    long_run INT
    expect_exit 130 || return 1
    sql_eq "SELECT status, exit_code FROM runs" "killed|130" || return 1
}
