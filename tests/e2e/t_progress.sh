# Progress of long stages (runner/progress.c).  Off a terminal: an info line
# every MLPIPE_PROGRESS_INTERVAL seconds (0.5 here, so that even a fast machine
# sees one in the ~2 s train stage), as text or as JSON with fields, none
# for stages shorter than the interval, none with --quiet or MLPIPE_PROGRESS=0.
# On a terminal (script(1) gives the binary one): a bar redrawn with \r and
# erased before every other log line.

# A synthetic-data MLP whose train stage runs a few seconds (one thread, small
# batches), reporting once per mini-batch.
progress_pipeline() {
    write_yaml slow.yaml <<'EOF'
version: 1
name: slow-mlp
seed: 1
stages:
  - load: synthetic
    n_samples: 20000
    n_features: 50
    n_classes: 3
    test_size: 0.2
  - train: mlp
    hidden: [128]
    epochs: 40
    batch_size: 8
    threads: 1
  - evaluate: classification
EOF
}

test_progress_text_lines() {
    progress_pipeline
    MLPIPE_PROGRESS_INTERVAL=0.5 run_ml run "$T/slow.yaml" --db "$DB"
    expect_exit 0 || return 1
    expect_out '"status": "finished"' || return 1
    # "mlpipe: train: progress 42% (16.9/40 epoch, 11.1 epoch/s, ETA 2s)"
    local n line='^mlpipe: train: progress [0-9]+% \([0-9.]+/40 epoch, [0-9.]+k? epoch/s, ETA [0-9hms]+\)$'
    n=$(grep -cE "$line" "$T/err")
    [ "$n" -ge 1 ] || fail "no progress line for the train stage" || return 1
    # at most one per 0.5 s, and none from the short stages
    local max
    max=$(sqlite3 -batch "$DB" "SELECT CAST(seconds * 2 AS INT) FROM stages WHERE kind = 'train'")
    [ "$n" -le "$max" ] || fail "$n progress lines, more than one per 0.5 s" || return 1
    [ "$(grep -c ': progress ' "$T/err")" -eq "$n" ] \
        || fail "progress lines outside the train stage" || return 1
    # and no terminal escapes off a terminal
    ! grep -q $'\r\|\033' "$T/err" || fail "escape codes off a terminal" || return 1
}

test_progress_json_fields() {
    progress_pipeline
    MLPIPE_PROGRESS_INTERVAL=0.5 run_ml --log-format json run "$T/slow.yaml" --db "$DB"
    expect_exit 0 || return 1
    jq -e . "$T/err" >/dev/null || fail "stderr is not JSON lines" || return 1
    jq -c 'select(.msg | test(": progress "))' "$T/err" > "$T/progress.jsonl"
    [ -s "$T/progress.jsonl" ] || fail "no progress record" || return 1
    local bad
    bad=$(jq -c 'select((.level == "info" and .stage == "train" and .unit == "epoch" and .total == 40
                         and (.done | type) == "number" and .done >= 0 and .done <= 40
                         and .pct >= 0 and .pct <= 100 and .rate > 0 and .eta_s >= 0
                         and (.run | type) == "string") | not)' "$T/progress.jsonl")
    [ -z "$bad" ] || fail "progress records with wrong fields: $bad" || return 1
}

# --quiet and MLPIPE_PROGRESS=0 turn it off (10 epochs, far longer than the
# 0.05 s interval); a stage shorter than the interval prints none (iris: the
# CSV loader and logistic regression both report).
test_progress_off() {
    progress_pipeline
    MLPIPE_PROGRESS_INTERVAL=0.05 run_ml --quiet run "$T/slow.yaml" --db "$DB" --set train.epochs=10
    expect_exit 0 || return 1
    ! grep -q ': progress ' "$T/err" || fail "progress with --quiet" || return 1
    MLPIPE_PROGRESS=0 MLPIPE_PROGRESS_INTERVAL=0.05 run_ml run "$T/slow.yaml" --db "$DB" \
        --set train.epochs=10
    expect_exit 0 || return 1
    expect_err "mlp: epoch 10/10 loss " || return 1
    ! grep -q ': progress ' "$T/err" || fail "progress with MLPIPE_PROGRESS=0" || return 1
    MLPIPE_PROGRESS_INTERVAL=1 run_ml run pipelines/iris-logreg.yaml --db "$DB"
    expect_exit 0 || return 1
    ! grep -q ': progress ' "$T/err" || fail "progress lines for stages under a second" || return 1
}

# The CSV loader reports bytes: a ~20 MB file with a tiny interval.
test_progress_csv_bytes() {
    awk 'BEGIN { srand(1); print "a,b,c,d,e,f,g,h,y";
                 for (i = 0; i < 400000; i++) printf "%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%d\n",
                     rand(), rand(), rand(), rand(), rand(), rand(), rand(), rand(), i % 2 }' \
        > "$T/big.csv"
    write_yaml csv.yaml <<EOF
version: 1
name: big-csv
stages:
  - load: csv
    path: $T/big.csv
    target: y
  - train: linear_regression
EOF
    MLPIPE_PROGRESS_INTERVAL=0.001 run_ml run "$T/csv.yaml" --db "$DB"
    expect_exit 0 || return 1
    local line='^mlpipe: load: progress [0-9]+% \([0-9.]+/[0-9.]+ MiB, [0-9.]+ [KMG]?i?B/s, ETA '
    grep -qE "$line" "$T/err" || fail "no bytes progress from the CSV loader" || return 1
}

# On a terminal: the bar, redrawn in place, erased before each log line.
test_progress_tty_bar() {
    command -v script >/dev/null 2>&1 \
        || { echo "    skip: no script(1) (util-linux) to run mlpipe on a terminal" >&2; return 0; }
    progress_pipeline
    TERM=xterm COLUMNS=100 script -qec "\"$MLPIPE\" run \"$T/slow.yaml\" --db \"$DB\"" /dev/null \
        > "$T/tty" 2>&1 < /dev/null
    RC=$?
    cp "$T/tty" "$T/err"        # for fail's stderr dump
    expect_exit 0 || return 1
    local bar=$'\rtrain \\[=*>\\? *\\] *[0-9]*% [0-9.]*/40 epoch, .* epoch/s, ETA [0-9hms]*\033\\[K'
    grep -qa "$bar" "$T/tty" || fail "no bar redrawn with \\r" || return 1
    [ "$(grep -ac $'\rtrain \\[' "$T/tty")" -ge 2 ] || fail "the bar was drawn only once" || return 1
    grep -qa $'\r\033\\[Kmlpipe: ' "$T/tty" || fail "the bar is not erased before log lines" || return 1
    ! grep -qa ': progress ' "$T/tty" || fail "progress log lines on a terminal" || return 1
    # What the terminal shows: per line, the text after the last \r (script
    # turns \n into \r\n), less the erase.  Every log line starts clean.
    awk -F'\r' '{ for (i = NF; i > 1 && $i == ""; i--); s = $i; sub(/^\033\[K/, "", s); print s }' \
        "$T/tty" > "$T/screen"
    grep -q '^mlpipe: run 1 finished in ' "$T/screen" || fail "the last log line is not clean" \
        || return 1
    [ "$(grep -c '^mlpipe: mlp: epoch [0-9]*/40 loss ' "$T/screen")" -eq 40 ] \
        || fail "epoch lines mixed with the bar: $(grep 'epoch' "$T/screen" | grep -v '^mlpipe' \
                                                   | head -3)" || return 1
}
