-- wrk script for `mlpipe serve` of a Fashion-MNIST MLP (784 features): POSTs
-- one row of 784 pixel values in [0, 1] as JSON to /predict.
--
--   ./mlpipe serve build/bench/serve-artifacts/fashion-mnist-mlp.mlpm --port 8080 -q &
--   wrk -t2 -c16 -d10s --latency -s bench/serve-post-mlp.lua http://127.0.0.1:8080/predict
--
-- The pixels are a fixed pattern, not a real image: the cost of a request
-- (parsing 784 numbers, one 784x512 and one 512x10 layer) does not depend on
-- them.  As in serve-post.lua, non-200 answers are counted and printed.
local px = {}
for i = 0, 783 do
    px[#px + 1] = string.format("%.4g", ((i * 37) % 256) / 255)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"instances": [[' .. table.concat(px, ", ") .. ']]}'

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
