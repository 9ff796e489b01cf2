# Sweeps: one recorded run per grid point, sharing a sweep id.

test_sweep_all_points_parallel() {
    run_ml run pipelines/iris-sweep.yaml --db "$DB" -j 2
    expect_exit 0 || return 1
    expect_out "sweep " || return 1
    expect_out "best: point" || return 1
    sql_eq "SELECT count(*) FROM runs WHERE status = 'finished'" "6" || return 1
    sql_eq "SELECT count(DISTINCT value) FROM params WHERE key = 'sweep.id'" "1" || return 1
    sql_eq "SELECT group_concat(value) FROM (SELECT value FROM params WHERE key = 'sweep.index' ORDER BY value + 0)" "0,1,2,3,4,5" || return 1
    # point 5 is the last value of every axis
    sql_eq "SELECT p.value FROM params p JOIN params i ON i.run = p.run AND i.key = 'sweep.index' AND i.value = '5' WHERE p.key = 'train.learning_rate'" "0.3" || return 1
    sql_eq "SELECT p.value FROM params p JOIN params i ON i.run = p.run AND i.key = 'sweep.index' AND i.value = '5' WHERE p.key = 'train.optimizer'" "adam" || return 1
    sql_eq "PRAGMA integrity_check" "ok" || return 1
}

test_sweep_index_runs_one_point() {
    run_ml run pipelines/iris-sweep.yaml --db "$DB" --sweep-index 2
    expect_exit 0 || return 1
    sql_eq "SELECT count(*) FROM runs" "1" || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.learning_rate'" "0.03" || return 1
    sql_eq "SELECT value FROM params WHERE key = 'train.optimizer'" "sgd" || return 1
    # independent pods of an Indexed Job agree on the sweep id
    run_ml run pipelines/iris-sweep.yaml --db "$DB" --sweep-index 3
    sql_eq "SELECT count(DISTINCT value) FROM params WHERE key = 'sweep.id'" "1" || return 1
    run_ml run pipelines/iris-sweep.yaml --db "$DB" --sweep-index 6
    expect_exit 2 || return 1
    expect_err "out of range" || return 1
}

test_sweep_bad_value_is_config_error() {
    sed 's/train.optimizer: \[sgd, adam\]/train.optimizer: [sgd, adamm]/' pipelines/iris-sweep.yaml > "$T/s.yaml"
    run_ml run "$T/s.yaml" --db "$DB"
    expect_exit 2 || return 1
    expect_err "$T/s.yaml:9:20: invalid value 'adamm'" || return 1
    [ ! -e "$DB" ] || sql_eq "SELECT count(*) FROM runs" "0" || return 1
}
