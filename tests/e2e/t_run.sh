# The happy paths: run, record, list/show, predict.

test_iris_pipeline() {
    run_ml run pipelines/iris-logreg.yaml --db "$DB" || return 1
    expect_exit 0 || return 1
    expect_out '"status": "finished"' || return 1
    sql_eq "SELECT status, exit_code, pipeline FROM runs" "finished|0|iris-logreg" || return 1
    sql_ge "SELECT value FROM metrics WHERE key = 'test.accuracy'" 0.93 || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.learning_rate'" "0.05" || return 1
    sql_eq "SELECT value FROM params WHERE key = 'split.stratify'" "true" || return 1
    sql_eq "SELECT count(*) FROM stages WHERE status = 'finished'" "6" || return 1
    sql_ge "SELECT count(*) FROM metrics WHERE key = 'train.loss' AND step >= 1" 10 || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key LIKE 'test.confusion_matrix.%'" "9" || return 1
    local model="$T/artifacts/iris-logreg.mlpm"
    [ -f "$model" ] || fail "no model file at $model" || return 1
    sql_eq "SELECT path, sha256, bytes FROM artifacts" \
        "$model|$(sha256sum "$model" | cut -d' ' -f1)|$(stat -c %s "$model")" || return 1
    sql_eq "PRAGMA integrity_check" "ok" || return 1
    sql_eq "PRAGMA journal_mode" "wal" || return 1
}

test_iris_predict_names() {
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" >/dev/null 2>&1 || fail "run failed" || return 1
    run_ml predict "$T/artifacts/iris-logreg.mlpm" examples/data/iris.csv -o "$T/pred.csv"
    expect_exit 0 || return 1
    [ "$(head -1 "$T/pred.csv")" = "prediction" ] || fail "header: $(head -1 "$T/pred.csv")" || return 1
    [ "$(wc -l < "$T/pred.csv")" -eq 151 ] || fail "expected 151 lines" || return 1
    # string labels come back as names; compare with the truth column
    local right
    right=$(paste -d, <(tail -n +2 examples/data/iris.csv | cut -d, -f5 | tr -d '\r') <(tail -n +2 "$T/pred.csv") \
        | awk -F, '$1 == $2 { n++ } END { print n + 0 }')
    [ "$right" -ge 140 ] || fail "only $right of 150 predicted right" || return 1
    # columns are matched by name: reordered columns and no target give the same answers
    cut -d, -f4,3,2,1 examples/data/iris.csv | awk -F, -v OFS=, '{ print $4, $2, $3, $1 }' > "$T/reordered.csv"
    run_ml predict "$T/artifacts/iris-logreg.mlpm" "$T/reordered.csv"
    expect_exit 0 || return 1
    cmp -s "$T/out" "$T/pred.csv" || fail "reordered columns changed predictions" || return 1
    # --proba adds one column per class, and stdin works
    run_ml predict "$T/artifacts/iris-logreg.mlpm" - --proba < examples/data/iris.csv
    expect_exit 0 || return 1
    [ "$(head -1 "$T/out")" = "prediction,p_setosa,p_versicolor,p_virginica" ] \
        || fail "proba header: $(head -1 "$T/out")" || return 1
}

test_anes96_tab_separated_numeric_labels() {
    run_ml run pipelines/anes96-vote.yaml --db "$DB"
    expect_exit 0 || return 1
    sql_ge "SELECT value FROM metrics WHERE key = 'test.accuracy'" 0.85 || return 1
    sql_ge "SELECT value FROM metrics WHERE key = 'test.roc_auc'" 0.9 || return 1
    run_ml predict "$T/artifacts/anes96-vote.mlpm" examples/data/anes96.tsv --delimiter tab
    expect_exit 0 || return 1
    [ "$(sort -u <(tail -n +2 "$T/out"))" = "$(printf '0\n1')" ] || fail "labels not 0/1" || return 1
}

test_set_override_and_env_db() {
    MLPIPE_DB="$DB" run_ml run pipelines/iris-logreg.yaml --set train.epochs=3 --set train.optimizer=sgd \
        --set seed=5
    expect_exit 0 || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.epochs'" "3" || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.optimizer'" "sgd" || return 1
    sql_eq "SELECT seed FROM runs" "5" || return 1
    sql_eq "SELECT max(step) FROM metrics WHERE key = 'train.loss'" "3" || return 1
}

test_runs_list_and_show() {
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" >/dev/null 2>&1
    "$MLPIPE" -q run pipelines/iris-logreg.yaml --db "$DB" --set train.epochs=2 >/dev/null 2>&1
    run_ml runs list --db "$DB"
    expect_exit 0 || return 1
    expect_out "iris-logreg" || return 1
    expect_out "test.accuracy=" || return 1
    [ "$(grep -c iris-logreg "$T/out")" -eq 2 ] || fail "expected two runs listed" || return 1
    run_ml runs show 1 --db "$DB"
    expect_exit 0 || return 1
    expect_out "train.learning_rate" || return 1
    expect_out "iris-logreg.mlpm" || return 1
    expect_out "logistic_regression" || return 1
    run_ml runs show last --json --db "$DB"
    expect_exit 0 || return 1
    expect_out '"params"' || return 1
    run_ml runs show 99 --db "$DB"
    expect_exit 2 || return 1
    expect_err "no run 99" || return 1
}

test_validate_runs_nothing() {
    run_ml validate pipelines/iris-logreg.yaml --db "$DB"
    expect_exit 0 || return 1
    expect_out "ok" || return 1
    [ ! -e "$DB" ] || fail "validate created a database" || return 1
}

test_stages_lists_modules() {
    run_ml stages
    expect_exit 0 || return 1
    for m in "load" "csv" "holdout" "standardize" "minmax" "logistic_regression" "classification"; do
        expect_out "$m" || return 1
    done
    run_ml stages logistic_regression
    expect_exit 0 || return 1
    expect_out "learning_rate" || return 1
    expect_out "sgd|momentum|adam" || return 1
    run_ml stages no_such_module
    expect_exit 2 || return 1
}

test_readme_reference_matches_stages() {
    "$MLPIPE" stages --markdown > "$T/ref.md" || fail "stages --markdown failed" || return 1
    sed -n '/<!-- stages:begin -->/,/<!-- stages:end -->/p' README.md | sed '1d;$d' > "$T/readme.md"
    diff -u "$T/readme.md" "$T/ref.md" > "$T/diff" \
        || { cat "$T/diff" >&2; fail "README YAML reference is out of date: regenerate with 'mlpipe stages --markdown'"; return 1; }
}

test_cross_validation_rows_and_repeatable() {
    run_ml run pipelines/iris-logreg.yaml --db "$DB"
    expect_exit 0 || return 1
    sql_eq "SELECT group_concat(step) FROM (SELECT step FROM metrics WHERE key = 'cv.accuracy' AND step IS NOT NULL ORDER BY step)" "1,2,3,4,5" || return 1
    sql_eq "SELECT count(*) FROM metrics WHERE key = 'cv.accuracy.std' AND step IS NULL" "1" || return 1
    sql_ge "SELECT value FROM metrics WHERE key = 'cv.accuracy' AND step IS NULL" 0.9 || return 1
    # the mean is the mean of the fold rows
    sql_eq "SELECT abs(m.value - (SELECT avg(value) FROM metrics WHERE key = 'cv.accuracy' AND step IS NOT NULL)) < 1e-12 FROM metrics m WHERE m.key = 'cv.accuracy' AND m.step IS NULL" "1" || return 1
    # folds are seeded: a second run gives the same figures
    run_ml run pipelines/iris-logreg.yaml --db "$DB"
    sql_eq "SELECT count(DISTINCT value) FROM metrics WHERE key = 'cv.log_loss' AND step = 3" "1" || return 1
    # cv_folds: 1 is a config error
    run_ml validate pipelines/iris-logreg.yaml --set evaluate.cv_folds=1
    expect_exit 2 || return 1
    expect_err "cv_folds" || return 1
}

# cv_folds on `evaluate: regression`: the shipped randhie pipeline with five
# folds gives five fold rows of every metric, the mean and std as final
# figures, repeatably; regression offers no cv_stratified (no classes).
test_cross_validation_regression() {
    run_ml run pipelines/randhie-linreg.yaml --db "$DB" --set evaluate.cv_folds=5
    expect_exit 0 || return 1
    expect_err "evaluate: cv.r2 = " || return 1
    local m
    for m in mse rmse mae r2 explained_variance; do
        sql_eq "SELECT group_concat(step) FROM (SELECT step FROM metrics WHERE key = 'cv.$m' AND step IS NOT NULL ORDER BY step)" "1,2,3,4,5" || return 1
        sql_eq "SELECT count(*) FROM metrics WHERE key = 'cv.$m.std' AND step IS NULL" "1" || return 1
        sql_eq "SELECT abs(m.value - (SELECT avg(value) FROM metrics WHERE key = 'cv.$m' AND step IS NOT NULL)) < 1e-9 FROM metrics m WHERE m.key = 'cv.$m' AND m.step IS NULL" "1" || return 1
    done
    # about the test split's figures (test R^2 0.076 on this data)
    sql_eq "SELECT value > 0.03 AND value < 0.12 FROM metrics WHERE key = 'cv.r2' AND step IS NULL" "1" || return 1
    sql_eq "SELECT abs(value - (SELECT value FROM metrics WHERE key = 'test.mse')) < 3 FROM metrics WHERE key = 'cv.mse' AND step IS NULL" "1" || return 1
    # mlpipe runs show --json has them too, the folds as history
    run_ml runs show 1 --json --db "$DB"
    expect_exit 0 || return 1
    [ "$(jq -r '.metrics["cv.rmse.std"] > 0' "$T/out")" = true ] || fail "no cv.rmse.std in runs show --json" || return 1
    [ "$(jq -c '.history["cv.mae"].steps' "$T/out")" = "[1,2,3,4,5]" ] \
        || fail "cv.mae history: $(jq -c '.history["cv.mae"]' "$T/out")" || return 1
    # seeded folds: the same figures again
    run_ml run pipelines/randhie-linreg.yaml --db "$DB" --set evaluate.cv_folds=5
    sql_eq "SELECT count(DISTINCT value), count(*) FROM metrics WHERE key = 'cv.mae' AND step = 4" "1|2" || return 1
    # config errors name the place
    run_ml validate pipelines/randhie-linreg.yaml --set evaluate.cv_stratified=true
    expect_exit 2 || return 1
    expect_err "unknown parameter 'cv_stratified' for evaluate: regression" || return 1
    sed 's/metrics: \[mse, rmse, mae, r2, explained_variance\]/&\n    cv_folds: 1/' \
        pipelines/randhie-linreg.yaml >"$T/cv1.yaml"
    run_ml validate "$T/cv1.yaml"
    expect_exit 2 || return 1
    expect_err "$T/cv1.yaml:18:5: cv_folds must be 0 (no cross-validation) or at least 2" || return 1
    sed 's/cv_folds: 1/cv_folds: 101/' "$T/cv1.yaml" >"$T/cv101.yaml"
    run_ml validate "$T/cv101.yaml"
    expect_exit 2 || return 1
    expect_err "$T/cv101.yaml:20:15: cv_folds must be in [0, 100], got 101" || return 1
    # more folds than training rows: the run fails at the evaluate stage
    cat >"$T/tiny.yaml" <<YAML
version: 1
stages:
  - load: synthetic
    kind: regression
    n_samples: 20
    n_features: 3
  - train: linear_regression
  - evaluate: regression
    cv_folds: 30
YAML
    run_ml run "$T/tiny.yaml" --db "$DB"
    expect_exit 1 || return 1
    expect_err "cannot make 30 folds of 20 rows" || return 1
}

# cv_folds on `evaluate: clustering`: k-means on iris (labels for the
# adjusted Rand index), folds stratified by species when asked.
test_cross_validation_kmeans() {
    cat >"$T/km.yaml" <<YAML
version: 1
name: iris-kmeans
stages:
  - load: csv
    path: examples/data/iris.csv
    target: species
  - transform: standardize
  - train: kmeans
    k: 3
  - evaluate: clustering
YAML
    run_ml run "$T/km.yaml" --db "$DB" --set evaluate.cv_folds=5
    expect_exit 0 || return 1
    local m
    for m in inertia silhouette adjusted_rand; do
        sql_eq "SELECT group_concat(step) FROM (SELECT step FROM metrics WHERE key = 'cv.$m' AND step IS NOT NULL ORDER BY step)" "1,2,3,4,5" || return 1
        sql_eq "SELECT count(*) FROM metrics WHERE key = 'cv.$m.std' AND step IS NULL" "1" || return 1
        sql_eq "SELECT abs(m.value - (SELECT avg(value) FROM metrics WHERE key = 'cv.$m' AND step IS NOT NULL)) < 1e-9 FROM metrics m WHERE m.key = 'cv.$m' AND m.step IS NULL" "1" || return 1
    done
    sql_ge "SELECT value FROM metrics WHERE key = 'cv.adjusted_rand' AND step IS NULL" 0.3 || return 1
    sql_ge "SELECT value FROM metrics WHERE key = 'cv.silhouette' AND step IS NULL" 0.3 || return 1
    # the held-out folds' inertias add up to about the training rows' figure
    sql_eq "SELECT (SELECT sum(value) FROM metrics WHERE key = 'cv.inertia' AND step IS NOT NULL) BETWEEN 0.9 * value AND 1.5 * value FROM metrics WHERE key = 'train.inertia' AND step IS NULL" "1" || return 1
    # the folds' own k-means history is not recorded: one train.final_inertia
    sql_eq "SELECT count(*) FROM metrics WHERE key = 'train.final_inertia'" "1" || return 1
    # stratified folds are another seeded assignment: other figures, repeatably
    run_ml run "$T/km.yaml" --db "$DB" --set evaluate.cv_folds=5 --set evaluate.cv_stratified=true
    expect_exit 0 || return 1
    run_ml run "$T/km.yaml" --db "$DB" --set evaluate.cv_folds=5 --set evaluate.cv_stratified=true
    sql_eq "SELECT count(DISTINCT value) FROM metrics WHERE key = 'cv.inertia' AND step = 2 AND run IN (2, 3)" "1" || return 1
    sql_eq "SELECT count(DISTINCT value) FROM metrics WHERE key = 'cv.inertia' AND step = 2" "2" || return 1
    run_ml validate "$T/km.yaml" --set evaluate.cv_folds=1
    expect_exit 2 || return 1
    expect_err "cv_folds must be 0 (no cross-validation) or at least 2" || return 1
}
