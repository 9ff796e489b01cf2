#!/usr/bin/python3
"""Runs mlpipe and the reference tools side by side on the same data and prints
one table (wall seconds, ratio mlpipe/reference, quality, target met?).

    /usr/bin/python3 bench/bench.py [--runs N] [--only mlp32,svm,...] [--out build/bench]

Called by bench/run.sh (`make bench`), which installs the tools and prepares
the data first.  Each workload runs mlpipe and the reference alternately, with
seeds 1, 2, ... (3 runs each; 5 for the MLP rows, whose test accuracy moves
by +-0.4 pt from seed to seed for both tools, so that three seeds cannot tell a
0.5 pt difference; --runs N sets every workload), and takes medians.  Times are fit times: mlpipe's from its run
database (`stages.seconds` of the train stage; of the load stage for the CSV
workload), the references' from a timer around the fit call only (ref.py;
liblinear-train: see liblinear_fit_seconds).  Every process also runs under
/usr/bin/time -v, for its peak resident set size and CPU time.

Threads: OPENBLAS_NUM_THREADS=2 (and OMP_NUM_THREADS=2) for every tool;
torch.set_num_threads(2) and threadpoolctl in the Python references.  The
machine's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE stay set for mlpipe and are
removed for the reference commands only (see docs/BENCHMARKS.md).

Writes OUT/results.md (the table as Markdown plus the run's conditions) and
OUT/results.json (every single run).
"""
import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THREADS = 2
PY = "/usr/bin/python3"

FMNIST_IDX = "/usr/share/datasets/fashion-mnist"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- environments

def env_mlpipe(args):
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               MLPIPE_ARTIFACTS=os.path.join(args.out, "artifacts"), BENCH_DATA=args.data)
    env.pop("MLPIPE_DB", None)
    return env


def env_reference(args):
    env = dict(os.environ)
    # Set on some processors for older OpenBLAS builds; they slow a current
    # numpy, so the references run without them (both together).
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env.update(OPENBLAS_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
               MKL_NUM_THREADS=str(THREADS), THREADS=str(THREADS))
    return env


# ---------------------------------------------------------------- running

def timed(cmd, env, cwd=ROOT):
    """Runs cmd under /usr/bin/time -v; returns (stdout, stderr, rc, usage)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        p = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name] + cmd, env=env, cwd=cwd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        usage = parse_time_v(tf.read())
    return p.stdout, p.stderr, p.returncode, usage


def parse_time_v(text):
    u = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            u["max_rss_kb"] = int(line.rsplit(":", 1)[1])
        elif line.startswith("User time (seconds):"):
            u["user_s"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("System time (seconds):"):
            u["sys_s"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("Elapsed (wall clock) time"):
            parts = line.rsplit(" ", 1)[1].split(":")
            secs = 0.0
            for p in parts:
                secs = secs * 60 + float(p)
            u["wall_s"] = secs
    return u


def run_mlpipe(args, w, seed):
    """One mlpipe run of workload w; returns a dict of seconds, quality, usage."""
    m = w["mlpipe"]
    cmd = [args.mlpipe, "-q", "run", m["pipeline"], "--db", args.db, "--set", f"seed={seed}"]
    for s in m.get("sets", []):
        cmd += ["--set", s]
    out, err, rc, usage = timed(cmd, env_mlpipe(args))
    if rc != 0:
        return dict(error=f"mlpipe exit {rc}: {tail(err)}", usage=usage)
    try:
        run_id = json.loads(out)["run"]
    except (ValueError, KeyError):
        return dict(error=f"no run id in mlpipe's output: {tail(out)}", usage=usage)
    db = sqlite3.connect(args.db)
    try:
        row = db.execute("SELECT seconds FROM stages WHERE run = ? AND kind = ?",
                         (run_id, m["time_stage"])).fetchone()
        metrics = dict(db.execute("SELECT key, value FROM metrics WHERE run = ? AND step IS NULL",
                                  (run_id,)).fetchall())
    finally:
        db.close()
    res = dict(run=run_id, seconds=row[0] if row else None, usage=usage)
    if m.get("metric"):
        res["quality"] = metrics.get(m["metric"])
        if res["quality"] is None:
            res["error"] = f"run {run_id} recorded no {m['metric']}"
    else:
        res["quality"] = "%dx%d" % (metrics.get("data.rows", 0), metrics.get("data.features", 0))
    return res


def run_python_ref(args, w, seed):
    name = w["ref"]["py"]
    out, err, rc, usage = timed([PY, os.path.join(HERE, "ref.py"), name, args.data, str(seed)],
                                env_reference(args))
    if rc != 0:
        return dict(error=f"reference exit {rc}: {tail(err)}", usage=usage)
    r = json.loads(out.strip().splitlines()[-1])
    q = w["ref"]["quality"]
    quality = ("%dx%d" % (r["rows"], r["cols"])) if q == "shape" else r[q]
    return dict(seconds=r["seconds"], quality=quality, usage=usage, info=r)


def liblinear_fit_seconds(trace, data_path, model_path):
    """liblinear-train has no timer of its own; under strace its fit time is from
    the close() of the training file (read_problem is done) to the openat() of
    the model file (save_model starts)."""
    fd = t_read = t_save = None
    for line in trace.splitlines():
        mt = re.match(r"\s*\d+\s+([\d.]+)\s+(openat|close)\((.*)\)\s+=\s+(-?\d+)", line)
        if not mt:
            continue
        t, call, argstr, ret = float(mt.group(1)), mt.group(2), mt.group(3), int(mt.group(4))
        if call == "openat" and f'"{data_path}"' in argstr and fd is None:
            fd = ret
        elif call == "close" and fd is not None and t_read is None and argstr.strip() == str(fd):
            t_read = t
        elif call == "openat" and f'"{model_path}"' in argstr:
            t_save = t
    if t_read is None or t_save is None:
        return None
    return t_save - t_read


def run_liblinear(args, w, seed):
    train = os.path.join(args.data, "fmnist-train.svm")
    test = os.path.join(args.data, "fmnist-test.svm")
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        trace = os.path.join(tmp, "trace")
        cmd = ["strace", "--seccomp-bpf", "-f", "-ttt", "-e", "trace=openat,close", "-o", trace,
               "liblinear-train", "-q", "-s", "2", train, model]
        out, err, rc, usage = timed(cmd, env_reference(args))
        if rc != 0:
            return dict(error=f"liblinear-train exit {rc}: {tail(err)}", usage=usage)
        secs = liblinear_fit_seconds(open(trace).read(), train, model)
        pout, perr, prc, _ = timed(["liblinear-predict", test, model, os.path.join(tmp, "pred")],
                                   env_reference(args))
        mt = re.search(r"Accuracy = ([\d.]+)%", pout + perr)
        if prc != 0 or not mt:
            return dict(error=f"liblinear-predict exit {prc}: {tail(pout + perr)}", usage=usage)
    if secs is None:
        return dict(error="could not find the fit in liblinear-train's trace", usage=usage)
    return dict(seconds=secs, quality=float(mt.group(1)) / 100.0, usage=usage)


def tail(text, n=3):
    return " | ".join(text.strip().splitlines()[-n:])


# ---------------------------------------------------------------- workloads

def fmt_acc(v):
    return "%.2f%%" % (100 * v)


WORKLOADS = [
    dict(key="mlp32", runs=5, label="MLP 784-512-10, batch 32, 5 epochs", ref_name="PyTorch",
         module="mlp", target_ratio=0.5,
         mlpipe=dict(pipeline="pipelines/fashion-mnist-mlp.yaml", time_stage="train",
                     metric="test.accuracy"),
         ref=dict(py="mlp32", quality="accuracy"),
         quality_target="acc within 0.5 pt", fmt=fmt_acc,
         quality_ok=lambda m, r: m >= r - 0.005),
    dict(key="mlp128", runs=5, label="MLP 784-512-10, batch 128, 5 epochs", ref_name="PyTorch",
         module="mlp", target_ratio=0.7,
         mlpipe=dict(pipeline="pipelines/fashion-mnist-mlp.yaml", time_stage="train",
                     metric="test.accuracy", sets=["train.batch_size=128"]),
         ref=dict(py="mlp128", quality="accuracy"),
         quality_target="acc within 0.5 pt", fmt=fmt_acc,
         quality_ok=lambda m, r: m >= r - 0.005),
    dict(key="logreg", label="logistic regression (multinomial)", ref_name="sklearn lbfgs",
         module="logistic_regression", target_ratio=0.25,
         mlpipe=dict(pipeline="pipelines/fashion-mnist-logreg.yaml", time_stage="train",
                     metric="test.accuracy"),
         ref=dict(py="logreg", quality="accuracy"),
         quality_target="acc >= 84.0%", fmt=fmt_acc,
         quality_ok=lambda m, r: m >= 0.840),
    dict(key="svm", label="linear SVM (one-vs-rest)", ref_name="liblinear -s 2",
         module="linear_svm", target_ratio=0.2,
         mlpipe=dict(pipeline="pipelines/fashion-mnist-svm.yaml", time_stage="train",
                     metric="test.accuracy"),
         ref=dict(liblinear=True),
         quality_target="acc >= 83.5%", fmt=fmt_acc,
         quality_ok=lambda m, r: m >= 0.835),
    dict(key="kmeans", label="k-means k=10, n_init=1", ref_name="sklearn KMeans",
         module="kmeans", target_ratio=0.8,
         mlpipe=dict(pipeline="pipelines/fashion-mnist-kmeans.yaml", time_stage="train",
                     metric="train.final_inertia", modules=["clustering"]),
         ref=dict(py="kmeans", quality="inertia"),
         quality_target="inertia <= 1.01x", fmt=lambda v: "%.5g" % v,
         quality_ok=lambda m, r: m <= 1.01 * r),
    dict(key="linreg", label="linear regression 1e6 x 100", ref_name="numpy lstsq",
         module="linear_regression", target_ratio=0.2,
         mlpipe=dict(pipeline="bench/pipelines/linreg-synth.yaml", time_stage="train",
                     metric="test.mse", modules=["regression"]),
         ref=dict(py="linreg", quality="mse"),
         quality_target="MSE within 1e-6 rel", fmt=lambda v: "%.9g" % v,
         quality_ok=lambda m, r: abs(m - r) <= 1e-6 * abs(r)),
    dict(key="csvload", label="CSV load 60000 x 785 (255 MB)", ref_name="numpy loadtxt",
         module="csv", target_ratio=0.5,
         mlpipe=dict(pipeline="bench/pipelines/csv-load.yaml", time_stage="load", metric=None),
         ref=dict(py="csvload", quality="shape"),
         quality_target="same shape", fmt=str,
         quality_ok=lambda m, r: m == r),
]


def module_available(args, name):
    p = subprocess.run([args.mlpipe, "stages", name], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    return p.returncode == 0


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None and "error" not in r]
    return statistics.median(vals) if vals and isinstance(vals[0], (int, float)) else (
        vals[0] if vals else None)


def workload_runs(args, w):
    return args.runs or w.get("runs", 3)


def bench_workload(args, w):
    runs = workload_runs(args, w)
    log(f"--- {w['key']}: {w['label']} (mlpipe vs {w['ref_name']}), {runs} runs each")
    mods = [w["module"]] + w["mlpipe"].get("modules", [])
    missing = [m for m in mods if not module_available(args, m)]
    res = dict(key=w["key"], mlpipe_runs=[], ref_runs=[], missing=missing)
    for i in range(runs):
        seed = i + 1
        if not missing:
            r = run_mlpipe(args, w, seed)
            res["mlpipe_runs"].append(r)
            log(f"{w['key']} mlpipe #{seed}: " + describe(r, w))
        r = run_liblinear(args, w, seed) if w["ref"].get("liblinear") else run_python_ref(args, w, seed)
        res["ref_runs"].append(r)
        log(f"{w['key']} {w['ref_name']} #{seed}: " + describe(r, w))
    return res


def describe(r, w):
    if "error" in r:
        return "ERROR " + r["error"]
    u = r.get("usage", {})
    q = r.get("quality")
    qs = w["fmt"](q) if isinstance(q, (int, float)) else str(q)
    return (f"{r['seconds']:.3f} s, {qs} (process: {u.get('wall_s', 0):.1f} s wall, "
            f"{u.get('user_s', 0) + u.get('sys_s', 0):.1f} s cpu, "
            f"{u.get('max_rss_kb', 0) / 1024:.0f} MiB peak)")


# ---------------------------------------------------------------- the table

HEADER = ["workload", "mlpipe s", "reference s", "ratio", "target", "quality mlpipe",
          "quality ref", "met?"]


def table_rows(results):
    rows = []
    by_key = {w["key"]: w for w in WORKLOADS}
    for res in results:
        w = by_key[res["key"]]
        label = f"{w['label']} vs {w['ref_name']}"
        ref_s = median_of(res["ref_runs"], "seconds")
        ref_q = median_of(res["ref_runs"], "quality")
        ref_err = [r["error"] for r in res["ref_runs"] if "error" in r]
        target = f"<= {w['target_ratio']}x, {w['quality_target']}"
        ref_s_txt = "%.3f" % ref_s if ref_s is not None else "error"
        ref_q_txt = w["fmt"](ref_q) if isinstance(ref_q, (int, float)) else (ref_q or "-")
        if res["missing"]:
            rows.append([label, "not available", ref_s_txt, "-", target, "-", ref_q_txt,
                         "n/a (module %s not built yet)" % ", ".join(res["missing"])])
            continue
        m_err = [r["error"] for r in res["mlpipe_runs"] if "error" in r]
        m_s = median_of(res["mlpipe_runs"], "seconds")
        m_q = median_of(res["mlpipe_runs"], "quality")
        if m_err or m_s is None:
            rows.append([label, "error", ref_s_txt, "-", target, "-", ref_q_txt,
                         "no: " + (m_err[0] if m_err else "no timing")[:120]])
            continue
        if ref_err or ref_s is None:
            rows.append([label, "%.3f" % m_s, "error", "-", target, w["fmt"](m_q), "-",
                         "? reference failed: " + (ref_err[0] if ref_err else "")[:120]])
            continue
        ratio = m_s / ref_s
        t_ok = ratio <= w["target_ratio"]
        q_ok = w["quality_ok"](m_q, ref_q)
        met = "yes" if t_ok and q_ok else "no (" + ", ".join(
            x for x, bad in (("time", not t_ok), ("quality", not q_ok)) if bad) + ")"
        m_q_txt = w["fmt"](m_q) if isinstance(m_q, (int, float)) else str(m_q)
        if w["key"] == "linreg" and isinstance(m_q, float) and isinstance(ref_q, float):
            m_q_txt += " (rel %.1e)" % (abs(m_q - ref_q) / abs(ref_q))
        rows.append([label, "%.3f" % m_s, ref_s_txt, "%.3fx" % ratio, target, m_q_txt,
                     ref_q_txt, met])
        res["summary"] = dict(mlpipe_s=m_s, ref_s=ref_s, ratio=ratio, mlpipe_q=m_q, ref_q=ref_q,
                              time_ok=t_ok, quality_ok=q_ok)
        if w["key"] == "mlp32":
            rss = max(r["usage"].get("max_rss_kb", 0) for r in res["mlpipe_runs"]) / 1024.0
            ref_rss = max(r["usage"].get("max_rss_kb", 0) for r in res["ref_runs"]
                          if "usage" in r) / 1024.0
            ok = rss < 1024
            rows.append(["MLP batch 32 training: peak RSS (MiB)", "%.0f" % rss, "%.0f" % ref_rss,
                         "%.2fx" % (rss / ref_rss) if ref_rss else "-", "< 1024 MiB", "-", "-",
                         "yes" if ok else "no"])
            res["rss"] = dict(mlpipe_mib=rss, ref_mib=ref_rss, ok=ok)
    return rows


def text_table(rows):
    widths = [max(len(str(r[i])) for r in [HEADER] + rows) for i in range(len(HEADER))]
    fmt = lambda r: " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    lines = [fmt(HEADER), "-+-".join("-" * x for x in widths)] + [fmt(r) for r in rows]
    return "\n".join(lines)


def md_table(rows):
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def process_table(results):
    """Medians per process (under /usr/bin/time -v): wall, CPU (user + sys), peak RSS."""
    by_key = {w["key"]: w for w in WORKLOADS}
    lines = ["| workload | mlpipe process wall s | cpu s | peak RSS MiB | reference process wall s "
             "| cpu s | peak RSS MiB |", "|---|---|---|---|---|---|---|"]

    def med(runs):
        us = [r["usage"] for r in runs if r.get("usage") and "error" not in r]
        if not us:
            return ["-", "-", "-"]
        return ["%.2f" % statistics.median(u.get("wall_s", 0) for u in us),
                "%.2f" % statistics.median(u.get("user_s", 0) + u.get("sys_s", 0) for u in us),
                "%.0f" % statistics.median(u.get("max_rss_kb", 0) / 1024 for u in us)]
    for res in results:
        w = by_key[res["key"]]
        lines.append("| %s | %s |" % (w["label"], " | ".join(med(res["mlpipe_runs"]) +
                                                            med(res["ref_runs"]))))
    return "\n".join(lines)


def conditions(args, results, t_start, load_start):
    info = {}
    for res in results:
        for r in res["ref_runs"]:
            if r.get("info"):
                for b in r["info"].get("blas", []):
                    if b.get("internal_api") == "openblas":
                        info["reference OpenBLAS kernel"] = "%s (OpenBLAS %s)" % (
                            b.get("architecture"), b.get("version"))
                for k in ("torch", "sklearn", "numpy"):
                    if k in r["info"]:
                        info[k] = r["info"][k]
    def out(cmd):
        try:
            return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True).stdout.strip()
        except OSError:
            return ""
    rev = out(["git", "rev-parse", "--short", "HEAD"])
    dirty = " with uncommitted changes" if out(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    lines = [
        "- date: %s; %s, medians; fit times in seconds"
        % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_start)),
           "%d runs of each tool per workload" % args.runs if args.runs else
           "3 runs of each tool per workload (seeds 1-3), 5 for the MLP rows (seeds 1-5)"),
        "- mlpipe: %s, built %s from commit %s%s" % (
            out([args.mlpipe, "version"]) or "?",
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(args.mlpipe))),
            rev or "?", dirty),
        "- load average (1 min) at start and end: %s, %s (2 cores; above ~2 other work "
        "shared the machine)" % ("%.2f" % load_start, "%.2f" % os.getloadavg()[0]),
        "- mlpipe: OPENBLAS_NUM_THREADS=%d, OPENBLAS_CORETYPE=%s, OPENBLAS_L2_SIZE=%s (as the "
        "machine sets them)" % (THREADS, os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
                               os.environ.get("OPENBLAS_L2_SIZE", "(unset)")),
        "- references: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; numpy and scikit-learn with "
        "OpenBLAS and OpenMP at %d threads (threadpoolctl); PyTorch with torch.set_num_threads(%d) "
        "and OpenBLAS at 1 thread inside it; liblinear is single-threaded" % (THREADS, THREADS),
    ]
    lines += ["- %s: %s" % kv for kv in sorted(info.items())]
    lines.append("- total benchmark time: %.0f s" % (time.time() - t_start))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--mlpipe", default=os.path.join(ROOT, "mlpipe"))
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    args.data = os.path.abspath(args.data or os.path.join(args.out, "data"))
    args.db = os.path.join(args.out, "runs.db")
    os.makedirs(args.out, exist_ok=True)
    for f in (args.db, args.db + "-wal", args.db + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    only = set(filter(None, args.only.split(",")))
    t_start = time.time()
    load_start = os.getloadavg()[0]
    results = []
    for w in WORKLOADS:
        if only and w["key"] not in only:
            continue
        results.append(bench_workload(args, w))
    rows = table_rows(results)
    print()
    print(text_table(rows))
    print()
    cond = conditions(args, results, t_start, load_start)
    print(cond)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("# mlpipe benchmark results\n\n" + md_table(rows) + "\n\n" + cond + "\n\n"
                "Whole processes (data loading, evaluation and start-up included):\n\n" +
                process_table(results) + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(dict(results=results, rows=rows), f, indent=1, default=str)
    log(f"wrote {os.path.join(args.out, 'results.md')} and results.json")


if __name__ == "__main__":
    main()
