-- wrk script for scripts/bench-resource-endpoints: each request carries the next token of a
-- file (one per line), cycling; a file of one line sends the same token every time.
--
-- Environment:
--   BENCH_TOKENS_FILE  the tokens
--   BENCH_MODE         "introspect" (POST, form token=…, client_secret_basic) or "userinfo"
--                      (GET, Authorization: Bearer)
--   BENCH_BASIC        base64 of client_id:client_secret (introspect)
--   BENCH_START        how many tokens to skip at the start (the check run starts half-way
--                      through the pool, so that the measured run does not meet the tokens it
--                      just verified while they are still remembered)
--   BENCH_CHECK        "1": also count answers that are not a live token (introspection's
--                      "active": false, any non-2xx) and print them at the end as
--                      "inactive: N" (costs wrk some CPU, so the measured runs leave it off)

local mode = os.getenv("BENCH_MODE") or "userinfo"
local basic = os.getenv("BENCH_BASIC") or ""
local check = os.getenv("BENCH_CHECK") == "1"

local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    if #line > 0 then
        tokens[#tokens + 1] = line
    end
end
local n = #tokens
local i = (tonumber(os.getenv("BENCH_START") or "0") or 0) % n

local introspect_headers = {
    ["Authorization"] = "Basic " .. basic,
    ["Content-Type"] = "application/x-www-form-urlencoded",
}

request = function()
    i = i % n + 1
    if mode == "introspect" then
        return wrk.format("POST", nil, introspect_headers, "token=" .. tokens[i])
    end
    return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] }, nil)
end

-- A global, so that done() (which runs in wrk's main Lua state) can read each thread's count.
inactive = 0
if check then
    response = function(status, headers, body)
        if status < 200 or status > 299
            or (mode == "introspect" and not string.find(body, '"active":%s*true')) then
            inactive = inactive + 1
        end
    end
end

local threads = {}
setup = function(thread)
    threads[#threads + 1] = thread
end

done = function(summary, latency, requests)
    if check then
        local total = 0
        for _, t in ipairs(threads) do
            total = total + t:get("inactive")
        end
        io.write(string.format("inactive: %d\n", total))
    end
end
