# Broken inputs: config errors are exit 2 with file:line:col and no run;
# data errors are exit 1 with file:line:col and a run recorded as failed.

# A valid base pipeline on a CSV in $T; $1 replaces the train stage lines.
iris_yaml() {
    cat >"$T/p.yaml" <<YAML
version: 1
name: broken
stages:
  - load: csv
    path: ${2:-examples/data/iris.csv}
    target: species
  - split: holdout
  - train: logistic_regression
$1
  - evaluate: classification
YAML
}

test_config_unknown_param_suggests() {
    iris_yaml "    learnin_rate: 0.1"
    run_ml run "$T/p.yaml" --db "$DB"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:9:5: unknown parameter 'learnin_rate' for train: logistic_regression (did you mean 'learning_rate'?)" || return 1
    [ ! -e "$DB" ] || fail "a config error created a run database" || return 1
}

test_config_wrong_type() {
    iris_yaml "    epochs: many"
    run_ml run "$T/p.yaml" --db "$DB"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:9:13:" || return 1
    expect_err "epochs" || return 1
}

test_config_out_of_range() {
    iris_yaml "    learning_rate: -1"
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:9:20: learning_rate must be > 0, got -1" || return 1
}

test_config_bad_enum_suggests() {
    iris_yaml "    optimizer: adan"
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:9:16:" || return 1
    expect_err "adam" || return 1
}

test_config_missing_required() {
    cat >"$T/p.yaml" <<YAML
version: 1
stages:
  - load: csv
    target: species
  - train: logistic_regression
YAML
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:3:5: missing required parameter 'path' for load: csv" || return 1
}

test_config_unknown_module_suggests() {
    cat >"$T/p.yaml" <<YAML
version: 1
stages:
  - load: csv
    path: x.csv
  - train: logistic_regresion
YAML
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:5:12: unknown train module 'logistic_regresion' (did you mean 'logistic_regression'?)" || return 1
}

test_config_bad_order() {
    cat >"$T/p.yaml" <<YAML
version: 1
stages:
  - load: csv
    path: x.csv
  - evaluate: classification
  - train: logistic_regression
YAML
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:5:5:" || return 1
}

test_config_unsupported_version() {
    printf 'version: 2\nstages:\n  - load: csv\n    path: x.csv\n' > "$T/p.yaml"
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:1:10: unsupported pipeline version 2" || return 1
}

test_config_yaml_syntax_error() {
    printf 'version: 1\nstages:\n  - load: csv\n    path: [x.csv\n' > "$T/p.yaml"
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:" || return 1
}

test_config_env_substitution() {
    iris_yaml "    epochs: \${EPOCHS:-4}" '${DATA_DIR}/iris.csv'
    run_ml validate "$T/p.yaml"
    expect_exit 2 || return 1
    expect_err "$T/p.yaml:5:11: environment variable 'DATA_DIR' is not set" || return 1
    DATA_DIR=examples/data run_ml run "$T/p.yaml" --db "$DB"
    expect_exit 0 || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.epochs'" "4" || return 1
}

test_config_bad_set_override() {
    run_ml run pipelines/iris-logreg.yaml --db "$DB" --set train.epochs=abc
    expect_exit 2 || return 1
    expect_err "--set train.epochs=abc" || return 1
    run_ml run pipelines/iris-logreg.yaml --db "$DB" --set trian.epochs=3
    expect_exit 2 || return 1
    run_ml run pipelines/iris-logreg.yaml --db "$DB" --set train.learnin_rate=3
    expect_exit 2 || return 1
    expect_err "did you mean 'learning_rate'" || return 1
    [ ! -e "$DB" ] || fail "a config error created a run database" || return 1
}

test_usage_errors_exit_2() {
    run_ml frobnicate
    expect_exit 2 || return 1
    run_ml run
    expect_exit 2 || return 1
    run_ml run pipelines/iris-logreg.yaml --no-such-flag
    expect_exit 2 || return 1
    run_ml run "$T/does-not-exist.yaml"
    expect_exit 2 || return 1
    expect_err "does-not-exist.yaml" || return 1
}

# data_case CSV-CONTENT EXPECTED-STDERR: the run fails with exit 1, names the
# place, and is recorded as failed at the load stage with its error.
data_case() {
    printf "$1" > "$T/d.csv"
    iris_yaml "    epochs: 2" "$T/d.csv"
    run_ml run "$T/p.yaml" --db "$DB"
    expect_exit 1 || return 1
    expect_err "$2" || return 1
    sql_eq "SELECT status, exit_code FROM runs" "failed|1" || return 1
    sql_eq "SELECT count(*) FROM runs WHERE error LIKE '%' || '$(basename "$T")/d.csv' || '%'" "1" || return 1
    sql_eq "SELECT kind, status FROM stages WHERE status = 'failed'" "load|failed" || return 1
    sql_eq "SELECT failed_stage IS NOT NULL FROM runs" "1" || return 1
    sql_eq "PRAGMA integrity_check" "ok" || return 1
}

test_data_ragged_row() {
    data_case 'a,b,species\n1,2,x\n3,4\n5,6,y\n' "$T/d.csv:3" || return 1
}

test_data_non_numeric_cell() {
    data_case 'a,b,species\n1,2,x\n3,abc,y\n5,6,y\n' "$T/d.csv:3:2: non-numeric value 'abc' in column 'b'" || return 1
}

test_data_empty_file() {
    data_case '' "is empty" || return 1
}

test_data_missing_target_column() {
    data_case 'a,b,specie\n1,2,x\n3,4,y\n' "no column 'species'" || return 1
}

test_data_nan_cell_and_drop() {
    data_case 'a,b,species\n1,2,x\n3,NaN,y\n5,6,y\n7,8,x\n' "$T/d.csv:3:2: missing value in column 'b'" || return 1
    # with missing: drop the row is skipped and the run finishes
    cat >"$T/p2.yaml" <<YAML
version: 1
stages:
  - load: csv
    path: $T/d.csv
    target: species
    missing: drop
  - train: logistic_regression
    epochs: 2
YAML
    run_ml run "$T/p2.yaml" --db "$DB"
    expect_exit 0 || return 1
    sql_eq "SELECT value FROM metrics WHERE key = 'data.rows' AND run = 2" "3.0" || return 1
}

test_predict_rejects_bad_rows() {
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" >/dev/null 2>&1 || fail "run failed" || return 1
    printf 'sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n5.0,x,1.4,0.2\n' > "$T/bad.csv"
    run_ml predict "$T/artifacts/iris-logreg.mlpm" "$T/bad.csv" -o "$T/pred.csv"
    expect_exit 1 || return 1
    expect_err "$T/bad.csv:3:2:" || return 1
    [ ! -e "$T/pred.csv" ] || fail "a failed predict left an output file" || return 1
    printf 'sepal_length,sepal_width,petal_width\n5.1,3.5,0.2\n' > "$T/bad2.csv"
    run_ml predict "$T/artifacts/iris-logreg.mlpm" "$T/bad2.csv"
    expect_exit 1 || return 1
    expect_err "petal_length" || return 1
}

test_model_file_corruption_refused() {
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" >/dev/null 2>&1 || fail "run failed" || return 1
    local m="$T/artifacts/iris-logreg.mlpm"
    head -c 300 "$m" > "$T/trunc.mlpm"
    run_ml predict "$T/trunc.mlpm" examples/data/iris.csv
    expect_exit 1 || return 1
    expect_err "truncated" || return 1
    sed 's/^features s 4 sepal_length/features s 4 sepal_lengtx/' "$m" > "$T/corrupt.mlpm"
    cmp -s "$m" "$T/corrupt.mlpm" && { fail "corruption did not change the file"; return 1; }
    run_ml predict "$T/corrupt.mlpm" examples/data/iris.csv
    expect_exit 1 || return 1
    expect_err "corrupted" || return 1
    sed '1s/^MLPM 1$/MLPM 9/' "$m" > "$T/newer.mlpm"
    run_ml predict "$T/newer.mlpm" examples/data/iris.csv
    expect_exit 1 || return 1
    expect_err "upgrade mlpipe" || return 1
}
