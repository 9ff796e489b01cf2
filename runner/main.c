/*
 * main.c -- the mlpipe command line: parse argv, call the runner, map the
 * result to an exit code.  This is the only file that decides the process's
 * exit status (README "Exit codes"):
 *   0 success, 1 a stage failed (run recorded as failed), 2 usage or config
 *   error (nothing ran), 130/143 interrupted by SIGINT/SIGTERM (run recorded
 *   as killed).
 */
#include "mp.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csv.h"
#include "docs.h"
#include "exec.h"
#include "predict.h"
#include "registry.h"
#include "report.h"
#include "rundb.h"
#include "serve.h"

static const char usage_text[] =
    "usage: mlpipe [--quiet|--verbose] [--log-format text|json] COMMAND ...\n"
    "\n"
    "  run FILE [--set KIND.param=VALUE]... [--db PATH] [--plugin SO]...\n"
    "           [-j N] [--sweep-index I]\n"
    "                           run a pipeline and record it in the run database;\n"
    "                           a `sweep:` runs every grid point (N at a time) or point I\n"
    "  validate FILE [--set ...] [--plugin SO]...\n"
    "                           check a pipeline (file:line:col errors); run nothing\n"
    "  stages [NAME] [--markdown] [--plugin SO]...\n"
    "                           list stage modules, or one module's parameters\n"
    "  runs list [--pipeline P] [--status S] [--since T] [--where EXPR] [--sort [-]KEY]\n"
    "            [--limit N] [--columns K,...] [--format table|csv|json] [--db PATH]\n"
    "  runs show|compare|best|metrics|export|delete|gc ... (see 'mlpipe runs help')\n"
    "                           query the run database\n"
    "  report RUN [RUN...] [-o FILE.html] [--db PATH]\n"
    "                           runs, learning curves and confusion matrices as one HTML file\n"
    "  predict MODEL INPUT [-o OUT] [--proba] [--format csv|jsonl] [--delimiter C]\n"
    "          [--plugin SO]...\n"
    "                           predict the rows of a CSV file ('-' = stdin/stdout)\n"
    "  serve MODEL [--host ADDR] [--port N] [--threads N] [--max-body BYTES]\n"
    "          [--plugin SO]...\n"
    "                           serve predictions over HTTP: POST /predict, GET /healthz,\n"
    "                           /metadata, /metrics (port 0 = any free port)\n"
    "  version                  print the version\n"
    "\n"
    "The run database is --db PATH, else $MLPIPE_DB, else ./mlpipe.db.\n"
    "Exit codes: 0 ok, 1 stage failed, 2 usage/config error, 130/143 interrupted.\n";

static void on_signal(int sig) {
    /* First signal: stop at the next safe point. Second: leave at once. */
    if (mp_cancel_signal) _exit(128 + sig);
    mp_cancel_signal = sig;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Growable list of option values (--set, --plugin). */
typedef struct strv { char **v; size_t n; } strv;

static int strv_push(strv *s, char *x) {
    char **v = realloc(s->v, (s->n + 1) * sizeof *v);
    if (!v) return -1;
    v[s->n++] = x;
    s->v = v;
    return 0;
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "mlpipe: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see 'mlpipe --help')\n");
    return MP_EXIT_CONFIG;
}

static int finish(const mp_err *err) {
    if (err->code != MP_OK) mp_err_print(err);
    return mp_exit_code(err);
}

int main(int argc, char **argv) {
    const char *cmd = NULL, *db = NULL, *out_path = NULL, *log_format = getenv("MLPIPE_LOG_FORMAT");
    strv sets = { 0 }, plugins = { 0 }, args = { 0 };
    bool markdown = false, proba = false;
    long sweep_index = -1, jobs = 1;
    char delimiter = 0;
    /* predict --format, and serve's options: checked by their command below */
    const char *format = NULL, *host = NULL, *port = NULL, *threads = NULL, *max_body = NULL;
    int rc = MP_EXIT_OK;
    mp_err err = { 0 };

    /* Options may appear anywhere; the first plain word is the command and
     * the rest are its arguments (`runs` passes its own options through). */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        bool runs_cmd = cmd && strcmp(cmd, "runs") == 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            goto out;
        } else if (strcmp(a, "--version") == 0) {
            printf("mlpipe %s\n", MP_VERSION);
            goto out;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            mp_log_level = MP_LOG_WARN;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            mp_log_level = MP_LOG_DEBUG;
        } else if (strcmp(a, "--log-format") == 0 || strcmp(a, "--db") == 0 ||
                   strcmp(a, "--set") == 0 || strcmp(a, "--plugin") == 0 ||
                   strcmp(a, "--sweep-index") == 0 || strcmp(a, "-j") == 0 ||
                   strcmp(a, "--jobs") == 0 ||
                   (!runs_cmd && (strcmp(a, "-o") == 0 || strcmp(a, "--delimiter") == 0))) {
            if (!next) {
                rc = usage_error("option '%s' needs a value", a);
                goto out;
            }
            i++;
            if (strcmp(a, "--log-format") == 0) log_format = next;
            else if (strcmp(a, "--db") == 0) db = next;
            else if (strcmp(a, "-o") == 0) out_path = next;
            else if (strcmp(a, "--delimiter") == 0) {
                if (!mp_csv_parse_delimiter(next, &delimiter)) {
                    rc = usage_error("invalid --delimiter '%s' (one character, or tab, "
                                     "semicolon, comma, pipe, space)", next);
                    goto out;
                }
            }
            else if (strcmp(a, "--sweep-index") == 0 || strcmp(a, "-j") == 0 ||
                     strcmp(a, "--jobs") == 0) {
                bool is_index = strcmp(a, "--sweep-index") == 0;
                char *end;
                long v = strtol(next, &end, 10);
                if (*end || end == next || v < (is_index ? 0 : 1)) {
                    rc = usage_error(is_index ? "option '%s' needs an integer >= 0"
                                              : "option '%s' needs an integer >= 1", a);
                    goto out;
                }
                if (is_index) sweep_index = v;
                else jobs = v;
            }
            else if (strv_push(strcmp(a, "--set") == 0 ? &sets : &plugins, argv[i]) != 0) goto oom;
        } else if (!runs_cmd && (strcmp(a, "--format") == 0 || strcmp(a, "--host") == 0 ||
                                 strcmp(a, "--port") == 0 || strcmp(a, "--threads") == 0 ||
                                 strcmp(a, "--max-body") == 0)) {
            if (!next) {
                rc = usage_error("option '%s' needs a value", a);
                goto out;
            }
            i++;
            const char **dst = a[2] == 'f' ? &format : a[2] == 'h' ? &host : a[2] == 'p' ? &port
                               : a[2] == 't' ? &threads : &max_body;
            *dst = next;
        } else if (strncmp(a, "--set=", 6) == 0) {
            if (strv_push(&sets, argv[i] + 6) != 0) goto oom;
        } else if (!runs_cmd && strcmp(a, "--markdown") == 0) {
            markdown = true;
        } else if (!runs_cmd && strcmp(a, "--proba") == 0) {
            proba = true;
        } else if (!cmd && a[0] == '-' && a[1] != '\0') {
            rc = usage_error("unknown option '%s'", a);
            goto out;
        } else if (!cmd) {
            cmd = a;
        } else if (a[0] == '-' && a[1] != '\0' && !runs_cmd) {
            rc = usage_error("unknown option '%s'", a);
            goto out;
        } else if (strv_push(&args, argv[i]) != 0) {
            goto oom;
        }
    }
    if (log_format) {
        if (strcmp(log_format, "json") == 0) mp_log_set_format(MP_LOG_JSON);
        else if (strcmp(log_format, "text") != 0) {
            rc = usage_error("--log-format must be text or json, not '%s'", log_format);
            goto out;
        }
    }
    if (!db) db = getenv("MLPIPE_DB");
    if (!db || !db[0]) db = "mlpipe.db";
    if (!cmd) {
        fputs(usage_text, stderr);
        rc = MP_EXIT_CONFIG;
        goto out;
    }

    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "validate") == 0) {
        if (args.n != 1) {
            rc = usage_error("'%s' takes one pipeline file", cmd);
            goto out;
        }
        mp_run_opts o = { .pipeline = args.v[0], .db_path = db, .sets = sets.v,
                          .n_sets = sets.n, .plugins = plugins.v, .n_plugins = plugins.n,
                          .sweep_index = sweep_index, .jobs = (int)jobs, .argc = argc,
                          .argv = argv };
        if (cmd[0] == 'v') {
            mp_spec *spec = NULL;
            mp_stage *st = NULL;
            if (mp_exec_prepare(&o, &spec, &st, &err) == MP_OK) {
                printf("%s: ok (%zu stages)\n", args.v[0], spec->n_stages);
                mp_stages_free(st, spec->n_stages);
                mp_spec_free(spec);
            }
        } else {
            long long run_id = 0;
            install_signals();
            mp_run(&o, stdout, &run_id, &err);
        }
        rc = finish(&err);
    } else if (strcmp(cmd, "stages") == 0) {
        for (size_t i = 0; i < plugins.n && err.code == MP_OK; i++)
            mp_registry_load_plugin(plugins.v[i], &err);
        if (err.code == MP_OK) {
            if (args.n > 1) rc = usage_error("'%s' takes at most one module name", cmd);
            else mp_stages_print(stdout, args.n ? args.v[0] : NULL, markdown, &err);
        }
        if (rc == MP_EXIT_OK) rc = finish(&err);
    } else if (strcmp(cmd, "runs") == 0) {
        mp_runs_main(db, (int)args.n, args.v, stdout, &err);
        rc = finish(&err);
    } else if (strcmp(cmd, "report") == 0) {
        mp_report_main(db, args.v, args.n, out_path, &err);
        rc = finish(&err);
    } else if (strcmp(cmd, "predict") == 0) {
        if (args.n != 2) {
            rc = usage_error("'%s' takes MODEL and INPUT", cmd);
            goto out;
        }
        for (size_t i = 0; i < plugins.n && err.code == MP_OK; i++)
            mp_registry_load_plugin(plugins.v[i], &err);
        mp_predict_opts po = { .model_path = args.v[0], .input_path = args.v[1],
                               .output_path = out_path, .delimiter = delimiter, .proba = proba };
        if (format && !mp_predict_parse_format(format, &po.format)) {
            rc = usage_error("--format must be csv or jsonl, not '%s'", format);
            goto out;
        }
        if (err.code == MP_OK) mp_predict_main(&po, &err);
        rc = finish(&err);
    } else if (strcmp(cmd, "serve") == 0) {
        /* Numbers are parsed here; their ranges are checked by mp_serve_main. */
        long long n_port = MP_SERVE_DEFAULT_PORT, n_threads = 0;
        mp_serve_opts so = { .host = host };
        if (args.n != 1)
            rc = usage_error("'%s' takes one MODEL file", cmd);
        else if (port && (!mp_parse_long(port, &n_port) || n_port < INT_MIN || n_port > INT_MAX))
            rc = usage_error("--port must be a number, not '%s'", port);
        else if (threads && (!mp_parse_long(threads, &n_threads) || n_threads < 1 ||
                             n_threads > INT_MAX))
            rc = usage_error("--threads must be a positive number, not '%s'", threads);
        else if (max_body && !mp_serve_parse_size(max_body, &so.max_body))
            rc = usage_error("--max-body must be a size in bytes such as 1048576 or 1m, not "
                             "'%s'", max_body);
        if (rc != MP_EXIT_OK) goto out;
        so.model_path = args.v[0];
        so.port = (int)n_port;
        so.threads = (int)n_threads;
        for (size_t i = 0; i < plugins.n && err.code == MP_OK; i++)
            mp_registry_load_plugin(plugins.v[i], &err);
        install_signals();      /* the first signal stops serve gracefully */
        if (err.code == MP_OK) mp_serve_main(&so, &err);
        rc = finish(&err);
    } else if (strcmp(cmd, "version") == 0) {
        printf("mlpipe %s\n", MP_VERSION);
    } else if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
    } else {
        rc = usage_error("unknown command '%s'", cmd);
    }
    goto out;
oom:
    fprintf(stderr, "mlpipe: error: out of memory\n");
    rc = MP_EXIT_FAILED;
out:
    mp_registry_shutdown();
    free(sets.v);
    free(plugins.v);
    free(args.v);
    if (fflush(stdout) != 0 && rc == MP_EXIT_OK) rc = MP_EXIT_FAILED;
    return rc;
}
