# Experiment tracking: queries, comparison, history, export, delete/gc, lost
# runs, many writers on one file, the HTML report, and a version-1 database
# upgraded in place.  Every test name contains "runs": run them alone with
#   MLPIPE=./mlpipe tests/e2e/run.sh runs

# quick_run [--set ...]: a short iris run (20 epochs) recorded in $DB.
quick_run() {
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" --set train.epochs=20 "$@" \
        >/dev/null 2>>"$T/err"
}

# json_ok FILE: the file is valid JSON (checked by SQLite's json_valid).
json_ok() {
    [ "$(sqlite3 :memory: "SELECT json_valid(readfile('$1'))")" = 1 ] \
        || fail "not valid JSON: $(head -c 300 "$1")"
}

# out_lines N: stdout has N lines.
out_lines() {
    [ "$(wc -l < "$T/out")" -eq "$1" ] || fail "expected $1 lines of output, got $(wc -l < "$T/out"):
$(head -20 "$T/out")"
}

test_runs_query_filters() {
    quick_run --set train.learning_rate=0.05 || fail "run 1" || return 1
    quick_run --set train.learning_rate=0.01 || fail "run 2" || return 1
    quick_run --set train.learning_rate=0.1 --set seed=7 || fail "run 3" || return 1
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" --set load.path=/nonexistent.csv \
        >/dev/null 2>&1
    sql_eq "SELECT group_concat(status) FROM (SELECT status FROM runs ORDER BY id)" "finished,finished,finished,failed" || return 1

    # the expression of the issue, shaped to these runs
    run_ml runs list --db "$DB" --where "test.accuracy > 0.5 and train.learning_rate in (0.1, 0.01) and pipeline like 'IRIS%'" \
        --columns id,train.learning_rate --format csv
    expect_exit 0 || return 1
    [ "$(cat "$T/out")" = "$(printf 'id,train.learning_rate\n3,0.1\n2,0.01')" ] \
        || fail "where: $(cat "$T/out")" || return 1
    # or / not / parentheses; a run without the metric matches no test on it
    run_ml runs list --db "$DB" --where "not (train.learning_rate = 0.05 or seed = 7)" --columns id --format csv
    [ "$(tr '\n' ' ' < "$T/out")" = "id 2 " ] || fail "not/or: $(cat "$T/out")" || return 1
    run_ml runs list --db "$DB" --where "test.accuracy != 0" --columns id --format csv
    [ "$(tr '\n' ' ' < "$T/out")" = "id 3 2 1 " ] || fail "!=: $(cat "$T/out")" || return 1

    # sort by a metric, a param and a field; --sort -KEY is descending
    run_ml runs list --db "$DB" --sort -train.learning_rate --columns id --format csv --status finished
    [ "$(tr '\n' ' ' < "$T/out")" = "id 3 1 2 " ] || fail "sort param: $(cat "$T/out")" || return 1
    run_ml runs list --db "$DB" --sort id --limit 2 --columns id --format csv
    [ "$(tr '\n' ' ' < "$T/out")" = "id 1 2 " ] || fail "sort id: $(cat "$T/out")" || return 1
    run_ml runs list --db "$DB" --sort -test.accuracy --limit 1 --columns id --format csv
    local top; top=$(tail -1 "$T/out")
    run_ml runs best --metric test.accuracy --db "$DB"
    expect_exit 0 || return 1
    [ "$(cat "$T/out")" = "$top" ] || fail "best $(cat "$T/out") != sorted first $top" || return 1

    # status, since
    run_ml runs list --db "$DB" --status failed --columns id,status,error --format csv
    expect_out "4,failed," || return 1
    out_lines 2 || return 1
    run_ml runs list --db "$DB" --since 1h --format csv --columns id
    out_lines 5 || return 1
    run_ml runs list --db "$DB" --since 2999-01-01
    expect_out "no matching runs" || return 1

    # table, JSON (and the --json alias), metric and param columns
    run_ml runs list --db "$DB" --columns id,status,test.accuracy,train.learning_rate,duration
    expect_exit 0 || return 1
    expect_out "test.accuracy" || return 1
    expect_out "DURATION" || return 1
    run_ml runs list --db "$DB" --format json --columns id,test.accuracy,train.learning_rate
    cp "$T/out" "$T/list.json"
    json_ok "$T/list.json" || return 1
    [ "$(sqlite3 :memory: "SELECT json_array_length(readfile('$T/list.json'))")" = 4 ] \
        || fail "json rows" || return 1
    [ "$(sqlite3 :memory: "SELECT json_extract(readfile('$T/list.json'), '\$[1].\"train.learning_rate\"')")" = 0.1 ] \
        || fail "json param value" || return 1
    run_ml runs list --db "$DB" --json
    cp "$T/out" "$T/list2.json"
    json_ok "$T/list2.json" || return 1

    # malformed expressions: exit 2, with the offset
    run_ml runs list --db "$DB" --where "test.accuracy > "
    expect_exit 2 || return 1
    expect_err "--where: offset 17: expected a value after '>'" || return 1
    run_ml runs list --db "$DB" --where "test.acuracy > 0.9"
    expect_exit 2 || return 1
    expect_err "did you mean 'test.accuracy'?" || return 1
    run_ml runs list --db "$DB" --where "pipeline = 'x' or 1 = 1"
    expect_exit 2 || return 1
    expect_err "offset 19: expected a key" || return 1
    run_ml runs list --db "$DB" --since yesterday
    expect_exit 2 || return 1
    run_ml runs list --db "$DB" --format yaml
    expect_exit 2 || return 1
}

test_runs_compare_best_metrics_export() {
    quick_run --set train.learning_rate=0.05 || fail "run 1" || return 1
    quick_run --set train.learning_rate=0.01 || fail "run 2" || return 1

    run_ml runs compare 1 2 --db "$DB"
    expect_exit 0 || return 1
    grep -qE '^\* +train\.learning_rate +0\.05 +0\.01$' "$T/out" \
        || fail "differing param not marked: $(grep learning_rate "$T/out")" || return 1
    grep -qE '^ +train\.epochs +20 +20$' "$T/out" \
        || fail "equal param marked: $(grep epochs "$T/out")" || return 1
    expect_out "metrics" || return 1
    run_ml runs compare 1 last --diff --format csv --db "$DB"
    expect_exit 0 || return 1
    expect_out "params,train.learning_rate,1,0.05,0.01" || return 1
    grep -q "train.epochs" "$T/out" && { fail "--diff kept an equal row"; return 1; }
    run_ml runs compare 1 2 --format json --db "$DB"
    cp "$T/out" "$T/cmp.json"
    json_ok "$T/cmp.json" || return 1
    run_ml runs compare 1 --db "$DB"
    expect_exit 2 || return 1
    run_ml runs compare 1 99 --db "$DB"
    expect_exit 2 || return 1
    expect_err "no run 99" || return 1

    # best: the id alone, for scripts; none -> exit 1
    run_ml runs best --metric test.log_loss --min --db "$DB"
    expect_exit 0 || return 1
    grep -qx '[12]' "$T/out" || fail "best printed: $(cat "$T/out")" || return 1
    run_ml runs best --metric test.accuracy --pipeline nope --db "$DB"
    expect_exit 1 || return 1
    expect_err "no finished run of pipeline 'nope' has a final figure 'test.accuracy'" || return 1
    run_ml runs best --metric nope.metric --db "$DB"
    expect_exit 1 || return 1
    run_ml runs best --db "$DB"
    expect_exit 2 || return 1

    # per-step history
    run_ml runs metrics 1 train.loss --db "$DB"
    expect_exit 0 || return 1
    expect_out "STEP" || return 1
    out_lines 21 || return 1           # header + 20 epochs, no sparkline off a terminal
    run_ml runs metrics 1 train.loss --sparkline --db "$DB"
    expect_out "▁" || return 1
    expect_out "20 steps" || return 1
    run_ml runs metrics last train.loss --format csv --db "$DB"
    [ "$(head -1 "$T/out")" = "step,value,time" ] || fail "csv header" || return 1
    out_lines 21 || return 1
    run_ml runs metrics 1 train.los --db "$DB"
    expect_exit 2 || return 1
    expect_err "did you mean 'train.loss'?" || return 1

    # export: flattened like MLflow's search_runs()
    run_ml runs export --db "$DB"
    expect_exit 0 || return 1
    out_lines 3 || return 1
    head -1 "$T/out" | grep -q "^id,pipeline,status,.*params.train.learning_rate.*metrics.test.accuracy" \
        || fail "export header: $(head -1 "$T/out" | cut -c1-200)" || return 1
    run_ml runs export --format json --where "train.learning_rate = 0.01" --db "$DB"
    cp "$T/out" "$T/exp.json"
    json_ok "$T/exp.json" || return 1
    [ "$(sqlite3 :memory: "SELECT json_extract(readfile('$T/exp.json'), '\$[0].\"params.train.learning_rate\"') || ' ' || json_array_length(readfile('$T/exp.json'))")" = "0.01 1" ] \
        || fail "export json" || return 1
}

test_runs_delete_and_gc() {
    local a="$T/art"
    quick_run --set export.path="$a/one.mlpm" || fail "run 1" || return 1
    quick_run --set export.path="$a/shared.mlpm" || fail "run 2" || return 1
    quick_run --set export.path="$a/shared.mlpm" || fail "run 3" || return 1
    [ -f "$a/one.mlpm" ] && [ -f "$a/shared.mlpm" ] || fail "no model files" || return 1

    run_ml runs delete 1 2 --db "$DB"
    expect_exit 0 || return 1
    expect_out "deleted 2 runs: 1 2" || return 1
    sql_eq "SELECT group_concat(id) FROM runs" "3" || return 1
    sql_eq "SELECT (SELECT count(*) FROM metrics WHERE run < 3) + (SELECT count(*) FROM params WHERE run < 3)" "0" || return 1
    sql_eq "SELECT count(*) FROM deleted_artifacts" "2" || return 1
    [ -f "$a/one.mlpm" ] || fail "delete removed a file" || return 1

    run_ml runs gc --dry-run --db "$DB"
    expect_exit 0 || return 1
    expect_out "would remove $a/one.mlpm" || return 1
    expect_out "kept $a/shared.mlpm  (a remaining run recorded the same path)" || return 1
    [ -f "$a/one.mlpm" ] || fail "dry run removed a file" || return 1
    sql_eq "SELECT count(*) FROM deleted_artifacts" "2" || return 1

    run_ml runs gc --db "$DB"
    expect_exit 0 || return 1
    expect_out "removed $a/one.mlpm" || return 1
    [ ! -e "$a/one.mlpm" ] || fail "gc left one.mlpm" || return 1
    [ -f "$a/shared.mlpm" ] || fail "gc removed a file run 3 uses" || return 1
    sql_eq "SELECT count(*) FROM deleted_artifacts" "0" || return 1

    # the last run that used the shared file goes: now gc removes it
    run_ml runs delete last --db "$DB"
    expect_exit 0 || return 1
    run_ml runs gc --db "$DB"
    expect_out "removed $a/shared.mlpm" || return 1
    [ ! -e "$a/shared.mlpm" ] || fail "gc left shared.mlpm" || return 1

    # a run deleted with plain SQL (foreign keys off) is cleaned up too
    quick_run --set export.path="$a/plain.mlpm" || fail "run 4" || return 1
    sqlite3 "$DB" "DELETE FROM runs WHERE id = 4"
    run_ml runs gc --db "$DB"
    expect_exit 0 || return 1
    expect_out "removed $a/plain.mlpm" || return 1
    sql_eq "SELECT count(*) FROM metrics" "0" || return 1
    sql_eq "PRAGMA integrity_check" "ok" || return 1
    sql_eq "PRAGMA foreign_key_check" "" || return 1

    run_ml runs delete 42 --db "$DB"
    expect_exit 2 || return 1
    expect_err "no run 42" || return 1
}

test_runs_lost_after_sigkill() {
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" --set train.epochs=100000 \
        --set train.tol=0 >/dev/null 2>&1 &
    local pid=$! i=0 n
    while [ $i -lt 150 ] && kill -0 $pid 2>/dev/null; do
        n=$(sqlite3 -batch "$DB" "SELECT count(*) FROM metrics WHERE key = 'train.loss'" 2>/dev/null)
        [ "${n:-0}" -ge 2 ] && break
        sleep 0.2; i=$((i + 1))
    done
    [ "${n:-0}" -ge 2 ] || { kill -KILL $pid 2>/dev/null; fail "no train.loss rows (did the run start?)"; return 1; }
    run_ml runs list --db "$DB" --status running --columns id,status --format csv
    [ "$(tail -1 "$T/out")" = "1,running" ] || { kill -KILL $pid; fail "live run: $(cat "$T/out")"; return 1; }
    kill -KILL $pid
    wait $pid 2>/dev/null
    sql_eq "SELECT status FROM runs" "running" || return 1     # the row is not rewritten
    sleep 2
    MLPIPE_LOST_AFTER=1 run_ml runs list --db "$DB" --status lost --columns id,status --format csv
    expect_exit 0 || return 1
    [ "$(tail -1 "$T/out")" = "1,lost" ] || fail "lost: $(cat "$T/out")" || return 1
    MLPIPE_LOST_AFTER=1 run_ml runs list --db "$DB"
    grep -qE '^ +1 +iris-logreg +lost ' "$T/out" || fail "list: $(cat "$T/out")" || return 1
    MLPIPE_LOST_AFTER=1 run_ml runs show 1 --db "$DB"
    expect_out "run 1  iris-logreg  lost" || return 1
    expect_out "no heartbeat for" || return 1
    MLPIPE_LOST_AFTER=1 run_ml runs list --db "$DB" --where "status = 'lost'" --columns id --format csv
    [ "$(tail -1 "$T/out")" = "1" ] || fail "where status: $(cat "$T/out")" || return 1
    # a lost run can be deleted without --force
    MLPIPE_LOST_AFTER=1 run_ml runs delete 1 --db "$DB"
    expect_exit 0 || return 1
}

test_runs_16_concurrent_writers() {
    local pids="" i
    for i in $(seq 1 16); do
        "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" --set train.epochs=20 \
            --set seed=$i --set export.path="$T/art/m$i.mlpm" >"$T/out.$i" 2>"$T/err.$i" &
        pids="$pids $!"
    done
    local bad=0
    for i in $pids; do wait "$i" || bad=$((bad + 1)); done
    [ $bad -eq 0 ] || { cat "$T"/err.* >&2; fail "$bad of 16 runs failed"; return 1; }
    sql_eq "SELECT count(*), count(DISTINCT seed) FROM runs WHERE status = 'finished' AND exit_code = 0" "16|16" || return 1
    # every run has all its rows: the same number of params and metrics each
    sql_eq "SELECT count(DISTINCT n) FROM (SELECT count(*) AS n FROM params GROUP BY run)" "1" || return 1
    sql_eq "SELECT count(DISTINCT n) FROM (SELECT count(*) AS n FROM metrics GROUP BY run)" "1" || return 1
    sql_eq "SELECT count(*) FROM (SELECT run FROM params GROUP BY run)" "16" || return 1
    sql_eq "SELECT count(*) FROM (SELECT run FROM metrics GROUP BY run)" "16" || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key = 'train.loss'" "320" || return 1
    sql_eq "SELECT count(*) FROM stages WHERE status = 'finished'" "96" || return 1
    sql_eq "SELECT count(*) FROM artifacts" "16" || return 1
    sql_eq "PRAGMA integrity_check" "ok" || return 1
    sql_eq "PRAGMA foreign_key_check" "" || return 1
    sql_eq "PRAGMA user_version" "3" || return 1
}

test_runs_report_html() {
    quick_run --set train.learning_rate=0.05 || fail "run 1" || return 1
    quick_run --set train.learning_rate=0.01 || fail "run 2" || return 1
    # a name that needs escaping, in a param
    sqlite3 "$DB" "UPDATE params SET value = '<b>&\"x''</b>' WHERE run = 2 AND key = 'load.target'"
    run_ml report 1 last -o "$T/report.html" --db "$DB"
    expect_exit 0 || return 1
    local r="$T/report.html" keys
    [ -s "$r" ] || fail "no report" || return 1
    [ ! -e "$r".tmp.* ] 2>/dev/null || fail "temporary file left" || return 1
    keys=$(sqlite3 "$DB" "SELECT count(DISTINCT key) FROM metrics WHERE step IS NOT NULL")
    # one chart per per-step key, one heat map per run
    [ "$(grep -c '<svg ' "$r")" -eq $((keys + 2)) ] || fail "expected $((keys + 2)) svg, got $(grep -c '<svg ' "$r")" || return 1
    [ "$(grep -c 'class="line-chart"' "$r")" -eq "$keys" ] || fail "line charts" || return 1
    [ "$(grep -c 'class="confusion-matrix"' "$r")" -eq 2 ] || fail "heat maps" || return 1
    [ "$(grep -c '<polyline class="series s0"' "$r")" -ge "$keys" ] || fail "run 1 lines" || return 1
    [ "$(grep -c '<polyline class="series s1"' "$r")" -ge "$keys" ] || fail "run 2 lines" || return 1
    [ "$(grep -c '<rect class="cell"' "$r")" -eq 18 ] || fail "3x3 cells x 2 runs" || return 1
    grep -q '>train.loss</figcaption>' "$r" || fail "no train.loss chart" || return 1
    grep -q 'class="tick"' "$r" && grep -q 'class="label x-label"' "$r" || fail "no axes" || return 1
    grep -q '>run 2</text>' "$r" || fail "no legend" || return 1
    grep -q '<tr class="diff"><td class="mark">\*</td><td>train.learning_rate</td>' "$r" \
        || fail "differing param not marked" || return 1
    grep -q '&lt;b&gt;&amp;&quot;x&#39;&lt;/b&gt;' "$r" || fail "text not escaped" || return 1
    # self-contained: nothing fetched, no script
    grep -qiE '<script|<link|<img|src=|@import|url\(' "$r" && { fail "external reference"; return 1; }
    if command -v xmllint >/dev/null 2>&1; then
        xmllint --noout "$r" 2>"$T/xml" || { cat "$T/xml" >&2; fail "not well-formed"; return 1; }
    else
        echo "    (xmllint not installed: well-formedness not checked)" >&2
    fi
    if command -v chromium >/dev/null 2>&1; then
        local prof; prof=$(mktemp -d)
        timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
            --disable-component-update --no-first-run --user-data-dir="$prof" \
            --window-size=1280,2000 --screenshot="$T/shot.png" "file://$r" >/dev/null 2>&1
        rm -rf "$prof"
        # a blank page compresses to a few kB; tables and charts do not
        [ "$(stat -c %s "$T/shot.png" 2>/dev/null || echo 0)" -gt 30000 ] \
            || fail "screenshot blank or missing" || return 1
    else
        echo "    (chromium not installed: screenshot skipped)" >&2
    fi
    # stdout, errors
    run_ml report 1 --db "$DB"
    expect_exit 0 || return 1
    expect_out "<!DOCTYPE html>" || return 1
    run_ml report --db "$DB"
    expect_exit 2 || return 1
    run_ml report 7 -o "$T/x.html" --db "$DB"
    expect_exit 2 || return 1
    [ ! -e "$T/x.html" ] || fail "report written for a missing run" || return 1
}

# The version-1 schema as mlpipe 0.1.0 created it (runner/rundb.c, migration 1).
V1_DDL="
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'killed')),
  started TEXT NOT NULL, ended TEXT, seconds REAL, config TEXT, config_sha256 TEXT,
  seed INTEGER, exit_code INTEGER, error TEXT, failed_stage TEXT, host TEXT, pid INTEGER,
  mlpipe_version TEXT, heartbeat TEXT);
CREATE INDEX runs_pipeline_started ON runs (pipeline, started);
CREATE INDEX runs_status ON runs (status);
CREATE TABLE params (run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  key TEXT NOT NULL, value TEXT, PRIMARY KEY (run, key));
CREATE TABLE metrics (run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  key TEXT NOT NULL, value REAL, step INTEGER, time REAL);
CREATE INDEX metrics_run_key_step ON metrics (run, key, step);
CREATE INDEX metrics_key_value ON metrics (key, value);
CREATE TABLE artifacts (run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  name TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT, bytes INTEGER);
CREATE INDEX artifacts_run ON artifacts (run);
CREATE TABLE stages (run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL, kind TEXT NOT NULL, module TEXT NOT NULL, status TEXT NOT NULL,
  seconds REAL, error TEXT, PRIMARY KEY (run, idx));
PRAGMA user_version = 1;"

test_runs_migrate_v1_database() {
    sqlite3 "$DB" "PRAGMA journal_mode = WAL; $V1_DDL
        INSERT INTO runs (pipeline, status, started, ended, seconds, seed, exit_code, host, pid)
          VALUES ('old', 'finished', '2025-01-02T03:04:05.000Z', '2025-01-02T03:04:06.500Z', 1.5, 9, 0, 'h', 1);
        INSERT INTO params VALUES (1, 'train.learning_rate', '0.3');
        INSERT INTO metrics VALUES (1, 'test.accuracy', 0.75, NULL, 1.7e9), (1, 'train.loss', 0.5, 1, 1.7e9);
        INSERT INTO artifacts VALUES (1, 'model', '$T/old.mlpm', NULL, NULL);" >/dev/null
    run_ml runs list --db "$DB" --where "test.accuracy > 0.7" --columns id,pipeline,test.accuracy,train.learning_rate --format csv
    expect_exit 0 || return 1
    [ "$(tail -1 "$T/out")" = "1,old,0.75,0.3" ] || fail "old data: $(cat "$T/out")" || return 1
    expect_err "migrating schema 1 -> 2" || return 1
    expect_err "migrating schema 2 -> 3" || return 1
    sql_eq "PRAGMA user_version" "3" || return 1
    sql_eq "SELECT count(*) FROM sqlite_master WHERE name IN ('deleted_artifacts', 'artifacts_deleted', 'metrics_final', 'params_key_value', 'artifacts_path')" "5" || return 1
    sql_eq "SELECT count(*) FROM sqlite_master WHERE name = 'metrics_key_value'" "0" || return 1
    sql_eq "PRAGMA integrity_check" "ok" || return 1
    # and new runs go into it
    quick_run || fail "run on the migrated database" || return 1
    sql_eq "SELECT count(*) FROM runs" "2" || return 1
}
