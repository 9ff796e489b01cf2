-- wrk script for `mlpipe serve`: POSTs one iris row as JSON to /predict.
--
--   ./mlpipe serve artifacts/iris-logreg.mlpm --port 8080 -q &
--   wrk -t2 -c16 -d10s --latency -s bench/serve-post.lua http://127.0.0.1:8080/predict
--
-- Every response must be 200: non-2xx answers are counted by wrk ("Non-2xx or
-- 3xx responses"), and done() below prints them too, so a broken server does
-- not pass for a fast one.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'

local bad = 0
function response(status, headers, body)
    if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
    io.write(string.format("requests/s: %.0f  p50: %.3f ms  p99: %.3f ms  errors: %d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
        latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write +
        summary.errors.status + summary.errors.timeout))
end
