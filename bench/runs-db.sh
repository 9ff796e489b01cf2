#!/bin/bash
# The run database at scale: query latency on 10,000 runs / 1,000,000 metric
# rows, and metric logging throughput (docs/BENCHMARKS.md, "Run database").
#
#   bench/runs-db.sh                  (bench/run.sh, i.e. `make bench`, runs it too)
#   BENCH_DB_RUNS=20000 BENCH_ROWS=100 bench/runs-db.sh
#
# 1. builds ./mlpipe and bench/rundb-bench.c (linked against build/rel objects);
# 2. generates the database: BENCH_DB_RUNS runs x BENCH_ROWS metric rows in one
#    transaction (rundb-bench gen), on the schema mlpipe itself creates;
# 3. times `mlpipe runs ...` commands on it, best of BENCH_REPEAT, as a user
#    would see them: the whole process, start-up included;
# 4. logs 1,000,000 rows through mp_rundb_metrics in batches of 4096 (the
#    executor's flush size), into an empty database and into the big one;
# 5. prints one Markdown table.
# Targets: `runs list --where 'test.accuracy > 0.9' --limit 20` < 100 ms;
# logging >= 200,000 rows/s.  A missed target is marked, not an error.
set -euo pipefail
cd "$(dirname "$0")/.."
MLPIPE=${MLPIPE:-./mlpipe}
OUT=${BENCH_OUT:-build/bench}
RUNS=${BENCH_DB_RUNS:-10000}  # not BENCH_RUNS: that is run.sh's repeat count
ROWS=${BENCH_ROWS:-100}
REPEAT=${BENCH_REPEAT:-5}
LOG_ROWS=${BENCH_LOG_ROWS:-1000000}
mkdir -p "$OUT"
say() { echo "runs-db: $*" >&2; }

make -s mlpipe >&2
PKGS="yaml-0.1 sqlite3 openblas jansson libcrypto libmicrohttpd zlib"
objs=$(ls build/rel/runner/*.o build/rel/stages/*.o | grep -v '/main\.o$')
# shellcheck disable=SC2046,SC2086
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Irunner -Istages \
    $(pkg-config --cflags $PKGS) -o "$OUT/rundb-bench" bench/rundb-bench.c $objs \
    $(pkg-config --libs $PKGS) -lcsv -lm -ldl -lpthread

work=$(mktemp -d "${TMPDIR:-/tmp}/mlpipe-runs-db.XXXXXX")
trap 'rm -rf "$work"' EXIT
DB=$work/runs.db

say "generating $RUNS runs x $ROWS metric rows"
gen_s=$("$OUT/rundb-bench" gen "$DB" "$RUNS" "$ROWS")
n_metrics=$(sqlite3 "$DB" "SELECT count(*) FROM metrics")
n_runs=$(sqlite3 "$DB" "SELECT count(*) FROM runs")
db_mb=$(awk -v b="$(stat -c %s "$DB")" 'BEGIN { printf "%.0f", b / 1048576 }')

# ms ARGS...: "WALL CPU": the best wall time and the best CPU time (user +
# system) of REPEAT runs of `mlpipe ARGS`, in ms.  On a busy machine the
# wall time waits for other processes; the CPU time is what the command
# itself costs (the database is in the page cache: it does not wait for I/O).
ms() {
    local i out best_w="" best_c="" w c
    for ((i = 0; i < REPEAT; i++)); do
        out=$( { TIMEFORMAT='%R %U %S'; time "$MLPIPE" "$@" --db "$DB" >/dev/null 2>&1; } 2>&1 )
        w=$(awk '{ printf "%.1f", $(NF-2) * 1000 }' <<<"$out")
        c=$(awk '{ printf "%.1f", ($(NF-1) + $NF) * 1000 }' <<<"$out")
        if [ -z "$best_w" ] || awk -v a="$w" -v b="$best_w" 'BEGIN { exit !(a < b) }'; then best_w=$w; fi
        if [ -z "$best_c" ] || awk -v a="$c" -v b="$best_c" 'BEGIN { exit !(a < b) }'; then best_c=$c; fi
    done
    echo "$best_w $best_c"
}

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 |"); }
# q LABEL TARGET_MS ARGS...: times `mlpipe ARGS` and adds a row.
q() {
    local label=$1 target=$2 w c verdict=""
    shift 2
    read -r w c < <(ms "$@")
    if [ -n "$target" ]; then
        verdict="< $target ms: $(awk -v v="$w" -v t="$target" 'BEGIN { print (v < t ? "yes" : "**no**") }')"
    fi
    row "$label" "$w ms" "$c ms" "$verdict"
}

say "timing queries (best of $REPEAT)"
q "\`mlpipe version\` (process start-up, for scale)" "" version
q "\`runs list --where 'test.accuracy > 0.9' --limit 20\`" 100 \
    runs list --where 'test.accuracy > 0.9' --limit 20
q "\`runs list --limit 20\`" "" runs list --limit 20
q "\`runs list --where \"test.accuracy > 0.95 and train.learning_rate in (0.1, 0.01) and pipeline like 'fmnist%'\" --limit 20\`" "" \
    runs list --where "test.accuracy > 0.95 and train.learning_rate in (0.1, 0.01) and pipeline like 'fmnist%'" --limit 20
q "\`runs list --where 'test.accuracy > 0.999' --limit 20\` (few matches)" "" \
    runs list --where 'test.accuracy > 0.999' --limit 20
q "\`runs list --where 'not test.accuracy <= 0.999' --limit 20\` (no index prefilter: every run probed)" "" \
    runs list --where 'not test.accuracy <= 0.999' --limit 20
q "\`runs list --sort -test.accuracy --limit 20 --columns id,test.accuracy,train.learning_rate\`" "" \
    runs list --sort -test.accuracy --limit 20 --columns id,test.accuracy,train.learning_rate
q "\`runs best --metric test.accuracy\`" "" runs best --metric test.accuracy
q "\`runs list --status lost\`" "" runs list --status lost
q "\`runs compare 1 2 3\`" "" runs compare 1 2 3
q "\`runs metrics 5000 train.loss\`" "" runs metrics 5000 train.loss
q "\`runs export --where 'test.accuracy > 0.9'\` (CSV, about 2,000 runs)" "" \
    runs export --where 'test.accuracy > 0.9'
q "\`report 1 2 3 -o report.html\`" "" report 1 2 3 -o "$work/report.html"

say "logging $LOG_ROWS metric rows (batches of 4096)"
# lg LABEL DB: logs LOG_ROWS rows into DB and adds a row (rates from wall and CPU time).
lg() {
    local n w c rate
    read -r n w c rate < <("$OUT/rundb-bench" log "$2" "$LOG_ROWS" 4096)
    row "$1 ($n rows)" "$(awk -v n="$n" -v t="$w" 'BEGIN { printf "%.0f rows/s (%.2f s)", n / t, t }')" \
        "$(awk -v n="$n" -v t="$c" 'BEGIN { printf "%.0f rows/s (%.2f s)", n / t, t }')" \
        "≥ 200,000 rows/s: $(awk -v r="$rate" 'BEGIN { print (r >= 200000 ? "yes" : "**no**") }')"
}
lg "mp_rundb_metrics into an empty database" "$work/fresh.db"
lg "mp_rundb_metrics into the $n_metrics-row database" "$DB"

echo
echo "Run database: $n_runs runs, $n_metrics metric rows, ${db_mb} MB (generated in ${gen_s} s);"
echo "SQLite $(sqlite3 --version | cut -d' ' -f1), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| what | wall | CPU | target (on wall time) |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
