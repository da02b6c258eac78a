#!/usr/bin/env bash
# End-to-end on loopback: the pre-fork example scraped by a real Prometheus, a worker
# SIGKILLed and respawned, `promtool check metrics` on our text, a push to a real
# Pushgateway, and a real gunicorn (stock prometheus_client metrics, /metrics served by
# the Python package, built by scripts/py-package-venv.sh) scraped by the same
# Prometheus. Installs Debian's prometheus and prometheus-pushgateway when missing.
# Everything listens on 127.0.0.1, every wait is bounded, every background process is
# stopped on exit. Exits non-zero on the first failed check.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

say() { echo "e2e: $*"; }
fail() {
    echo "e2e: FAIL: $*" >&2
    exit 1
}

# --- tools ---------------------------------------------------------------------------
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
say "$(prometheus --version 2>&1 | head -1)"
say "$(prometheus-pushgateway --version 2>&1 | head -1)"

# --- build ---------------------------------------------------------------------------
cargo build --release --example prefork_server --bin prometheus-multiproc
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
example="$target/release/examples/prefork_server"
cli="$target/release/prometheus-multiproc"

# --- workspace and cleanup -----------------------------------------------------------
work=$(mktemp -d /tmp/pmp-e2e.XXXXXX)
metrics_dir="$work/metrics"
mkdir -p "$metrics_dir"
started=()
stop_all() {
    local pid
    for pid in "${started[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${started[@]}"; do
            kill -0 -- "-$pid" 2>/dev/null && alive=1
        done
        [ "$alive" -eq 0 ] && break
        sleep 0.2
    done
    for pid in "${started[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 143' TERM INT

# Starts "$@" in a process group of its own (so stop_all reaches its children), with
# output to $work/$name.log; sets $last_pid.
start() {
    local name=$1
    shift
    setsid "$@" >"$work/$name.log" 2>&1 &
    last_pid=$!
    started+=("$last_pid")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.2 s.
wait_until() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${seconds}s waiting for $what"
        sleep 0.2
    done
}

# --- the pre-fork server -------------------------------------------------------------
start prefork env PROMETHEUS_MULTIPROC_DIR="$metrics_dir" "$example" --workers 4 \
    --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0
prefork_pid=$last_pid
wait_until 30 "the pre-fork server's URLs" grep -q 'metrics: ' "$work/prefork.log"
app_url=$(sed -n 's|^  app: *\(http://[^ ]*/\) .*|\1|p' "$work/prefork.log")
metrics_url=$(sed -n 's|^  metrics: *\(http://[^ ]*\)$|\1|p' "$work/prefork.log")
metrics_hostport=${metrics_url#http://}
metrics_hostport=${metrics_hostport%/metrics}
wait_until 30 "$metrics_url" curl -sf -o /dev/null "$metrics_url"
wait_until 30 "$app_url" curl -s -o /dev/null "${app_url}nope"
say "pre-fork server: master pid $prefork_pid, app $app_url, metrics $metrics_url"

sent=0
# The /nope request above went to a worker: it counts (route "other", status 404).
sent=$((sent + 1))

# send_requests N: N requests cycling over /, /slow, /error, 8 at a time.
send_requests() {
    local n=$1 i routes=("" slow error)
    local config="$work/curl.cfg"
    : >"$config"
    for ((i = 0; i < n; i++)); do
        printf 'url = "%s%s"\noutput = "/dev/null"\n' "$app_url" "${routes[i % 3]}" >>"$config"
    done
    local codes
    codes=$(curl -s --no-progress-meter --parallel --parallel-max 8 -K "$config" -w '%{http_code}\n')
    local ok err
    ok=$(grep -c '^200$' <<<"$codes" || true)
    err=$(grep -c '^500$' <<<"$codes" || true)
    [ "$((ok + err))" -eq "$n" ] || fail "sent $n requests, got $ok × 200 and $err × 500: $(sort <<<"$codes" | uniq -c | tr '\n' ' ')"
    sent=$((sent + n))
    say "sent $n requests ($ok × 200, $err × 500 from /error); $sent in all"
}

# --- Prometheus ----------------------------------------------------------------------
prom_port=$(free_port)
gunicorn_port=$(free_port)
prom="http://127.0.0.1:$prom_port"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: prefork
    static_configs:
      - targets: ['$metrics_hostport']
  - job_name: gunicorn
    static_configs:
      - targets: ['127.0.0.1:$gunicorn_port']
EOF
start prometheus prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn
wait_until 60 "Prometheus to be ready" curl -sf "$prom/-/ready"
test_start=$(date +%s)

# query EXPR: the single value of an instant query ("" when there is none).
query() {
    curl -sf "$prom/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // ""'
}
# expect_query SECONDS EXPR VALUE: waits until EXPR evaluates to VALUE.
expect_query() {
    local seconds=$1 expr=$2 want=$3 got="" deadline=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$deadline" ]; do
        got=$(query "$expr" || true)
        [ "$got" = "$want" ] && {
            say "Prometheus: $expr = $got"
            return 0
        }
        sleep 0.5
    done
    fail "Prometheus: $expr = ${got:-<no data>} after ${seconds}s, expected $want"
}

target_up() { [ "$(query 'up{job="prefork"}')" = 1 ]; }
wait_until 30 "the first scrape" target_up
send_requests 600
expect_query 30 'sum(app_requests_total)' "$sent"
expect_query 10 'sum(app_request_duration_seconds_count)' "$sent"
expect_query 10 'sum(app_requests_total{route="/error",status="500"})' 200
expect_query 10 'sum(app_request_duration_seconds_count{route="/error",status="500"})' 200
expect_query 10 'sum(app_request_duration_seconds_bucket{route="/slow",le="+Inf"})' 200
expect_query 10 'app_requests_in_flight' 0

# --- kill a worker -------------------------------------------------------------------
# Never backwards, seen by a fast scraper: read our /metrics every 50 ms from before
# the kill until the traffic after it has been counted.
start sampler bash -c "while :; do curl -sf '$metrics_url' | awk '/^app_requests_total[{ ]/ {s += \$NF} END {print s + 0}'; sleep 0.05; done"
sampler_pid=$last_pid
hello=$(curl -s "$app_url")
sent=$((sent + 1))
victim=$(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' <<<"$hello")
victim_id=$(sed -n 's/.*worker \(w[0-9]*\).*/\1/p' <<<"$hello")
[ -n "$victim" ] || fail "no worker pid in the answer of /: $hello"
before=$(curl -sf "$metrics_url" | awk '/^app_requests_total[{ ]/ {s += $NF} END {print s + 0}')
kill -KILL "$victim"
say "killed worker $victim_id (pid $victim) with SIGKILL; the counter read $before before"
wait_until 15 "the master to respawn $victim_id" grep -q "worker $victim_id (pid $victim) was killed" "$work/prefork.log"
grep "worker $victim_id (pid $victim)" "$work/prefork.log" | sed 's/^/e2e:   /'
after=$(curl -sf "$metrics_url" | awk '/^app_requests_total[{ ]/ {s += $NF} END {print s + 0}')
[ "$after" = "$before" ] || fail "the counter went from $before to $after when a worker died"
say "right after the kill the counter still reads $after"
# The respawned worker serves again (each probe is a request, and counts).
respawned=""
for _ in $(seq 200); do
    hello=$(curl -s "$app_url")
    sent=$((sent + 1))
    if grep -q "worker $victim_id (pid" <<<"$hello"; then
        respawned=$(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' <<<"$hello")
        break
    fi
    sleep 0.05
done
[ -n "$respawned" ] && [ "$respawned" != "$victim" ] || fail "no answer from a respawned $victim_id"
say "$victim_id answers again as pid $respawned"
send_requests 600
expect_query 30 'sum(app_requests_total)' "$sent"
expect_query 10 'sum(app_request_duration_seconds_count)' "$sent"
expect_query 10 'app_requests_in_flight' 0
kill -TERM -- "-$sampler_pid"
sleep 0.2
reads=$(wc -l <"$work/sampler.log")
[ "$reads" -ge 20 ] || fail "the fast scraper read /metrics only $reads times"
awk 'NR > 1 && $1 < prev {bad = 1; printf "e2e: /metrics went back from %s to %s\n", prev, $1} {prev = $1} END {exit bad}' \
    "$work/sampler.log" || fail "app_requests_total went backwards on /metrics"
say "fast scraper: $reads reads of /metrics around the kill, never decreasing ($(head -1 "$work/sampler.log") to $(tail -1 "$work/sampler.log"))"

# Never backwards, seen by Prometheus: every raw sample of every series since the start
# (per series, in order), and Prometheus's own resets().
span=$(($(date +%s) - test_start + 5))
curl -sf "$prom/api/v1/query" --data-urlencode "query=app_requests_total[${span}s]" >"$work/raw.json"
series=$(jq '.data.result | length' "$work/raw.json")
samples=$(jq '[.data.result[].values | length] | add' "$work/raw.json")
backwards=$(jq '[.data.result[].values | map(.[1] | tonumber) | . as $v | range(1; length) | select($v[.] < $v[. - 1])] | length' "$work/raw.json")
[ "$series" -ge 3 ] && [ "$samples" -ge "$((3 * series))" ] || fail "too few samples in Prometheus: $series series, $samples samples"
[ "$backwards" -eq 0 ] || fail "Prometheus stored $backwards decreasing samples of app_requests_total"
say "Prometheus: $samples raw samples of $series app_requests_total series over ${span}s, none decreasing"
expect_query 10 "sum(resets(app_requests_total[${span}s]))" 0

# --- promtool ------------------------------------------------------------------------
curl -sf "$metrics_url" >"$work/exposition.txt"
# Per-worker process metrics of every live worker, read from /proc by the exporter.
rss_workers=$(awk '/^process_resident_memory_bytes\{worker="w[0-9]+"\} [0-9.e+]+$/ && $NF > 0 {n++} END {print n + 0}' "$work/exposition.txt")
[ "$rss_workers" -eq 4 ] || fail "expected process_resident_memory_bytes of 4 live workers, found $rss_workers"
say "process metrics: resident memory of all 4 live workers in /metrics"
expect_query 10 "count(process_cpu_seconds_total)" 4
"$cli" scrape --dir "$metrics_dir" >"$work/cli-scrape.txt"
for file in exposition.txt cli-scrape.txt; do
    if ! promtool check metrics <"$work/$file" 2>"$work/promtool.err"; then
        cat "$work/promtool.err" >&2
        fail "promtool check metrics rejected $file"
    fi
    say "promtool check metrics: $file OK ($(wc -l <"$work/$file") lines)"
done

# --- Pushgateway ---------------------------------------------------------------------
gw_port=$(free_port)
gateway="http://127.0.0.1:$gw_port"
start pushgateway prometheus-pushgateway --web.listen-address="127.0.0.1:$gw_port" --log.level=warn
wait_until 30 "the Pushgateway to be ready" curl -sf "$gateway/-/ready"

# gw_sum METRIC: the sum of METRIC's samples in group job="e2e", instance="prefork/1".
gw_sum() {
    curl -sf "$gateway/metrics" |
        awk -v m="$1" 'index($0, m "{") == 1 && /job="e2e"/ && /instance="prefork\/1"/ {s += $NF; n++} END {print (n ? s : "absent")}'
}
push() {
    "$cli" push --gateway "$gateway" --job e2e --label instance=prefork/1 "$@"
}

# The whole directory with PUT.
push --dir "$metrics_dir"
[ "$(gw_sum app_requests_total)" = "$sent" ] || fail "Pushgateway app_requests_total = $(gw_sum app_requests_total), expected $sent"
[ "$(gw_sum app_request_duration_seconds_count)" = "$sent" ] || fail "Pushgateway histogram count = $(gw_sum app_request_duration_seconds_count)"
say "PUT: Pushgateway shows app_requests_total = $sent and app_request_duration_seconds_count = $sent"

# POST replaces only the metrics pushed: counters alone, from a copy of the counter files
# plus more traffic, leave the histogram as it was.
send_requests 30
counters_only="$work/counters-only"
mkdir "$counters_only"
cp "$metrics_dir"/counter_*.db "$counters_only"/
push --dir "$counters_only" --method post
[ "$(gw_sum app_requests_total)" = "$sent" ] || fail "after POST, app_requests_total = $(gw_sum app_requests_total), expected $sent"
[ "$(gw_sum app_request_duration_seconds_count)" = "$((sent - 30))" ] ||
    fail "after POST, the histogram count = $(gw_sum app_request_duration_seconds_count), expected it kept at $((sent - 30))"
say "POST: app_requests_total = $sent, histogram kept at $((sent - 30))"

# PUT replaces the group: the histogram disappears.
push --dir "$counters_only" --method put
[ "$(gw_sum app_requests_total)" = "$sent" ] || fail "after PUT, app_requests_total = $(gw_sum app_requests_total)"
[ "$(gw_sum app_request_duration_seconds_count)" = absent ] || fail "after PUT, the histogram is still in the group"
say "PUT: app_requests_total = $sent, histogram gone from the group"

# --- gunicorn with the Python package -------------------------------------------------
# 4 sync workers recycled every 25 requests, counting with stock prometheus_client and
# serving /metrics through prometheus_multiproc.make_wsgi_app; Prometheus (job gunicorn)
# must see exactly the requests sent.
py=$(scripts/py-package-venv.sh)
gunicorn_dir="$work/gunicorn"
mkdir -p "$gunicorn_dir/metrics"
cat >"$gunicorn_dir/wsgiapp.py" <<'EOF'
from prometheus_client import Counter
from prometheus_multiproc import make_wsgi_app

REQUESTS = Counter("gunicorn_app_requests", "Requests served by the gunicorn app.", ["path"])
metrics = make_wsgi_app()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        return metrics(environ, start_response)
    REQUESTS.labels(environ["PATH_INFO"]).inc()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
EOF
cat >"$gunicorn_dir/gunicorn_conf.py" <<'EOF'
from prometheus_multiproc import mark_process_dead


def child_exit(server, worker):
    mark_process_dead(worker.pid)
EOF
start gunicorn env -C "$gunicorn_dir" PROMETHEUS_MULTIPROC_DIR="$gunicorn_dir/metrics" "$py" -m gunicorn \
    -c gunicorn_conf.py --workers 4 --max-requests 25 --max-requests-jitter 0 \
    --bind "127.0.0.1:$gunicorn_port" wsgiapp:app
wait_until 60 "gunicorn on port $gunicorn_port" curl -sf -o /dev/null "http://127.0.0.1:$gunicorn_port/metrics"
gunicorn_up() { [ "$(query 'up{job="gunicorn"}')" = 1 ]; }
wait_until 30 "Prometheus's first scrape of gunicorn" gunicorn_up
gunicorn_sent=0
for path in a b c d; do
    for _ in $(seq 75); do
        curl -sf -o /dev/null "http://127.0.0.1:$gunicorn_port/$path" || fail "gunicorn request to /$path failed"
        gunicorn_sent=$((gunicorn_sent + 1))
    done
done
say "sent $gunicorn_sent requests to gunicorn (4 workers, recycled every 25 requests)"
expect_query 30 'sum(gunicorn_app_requests_total{job="gunicorn"})' "$gunicorn_sent"
expect_query 10 'gunicorn_app_requests_total{job="gunicorn",path="/c"}' 75
files=$(find "$gunicorn_dir/metrics" -name 'counter_*.db' | wc -l)
[ "$files" -gt 4 ] || fail "gunicorn's workers were not recycled ($files counter files)"
say "gunicorn: $files workers' counter files, one exposition, exact total"

# --- clean shutdown ------------------------------------------------------------------
kill -TERM "$prefork_pid"
for _ in $(seq 75); do
    kill -0 "$prefork_pid" 2>/dev/null || break
    sleep 0.2
done
kill -0 "$prefork_pid" 2>/dev/null && fail "the pre-fork server did not stop within 15 s of SIGTERM"
wait "$prefork_pid" && status=0 || status=$?
[ "$status" -eq 0 ] || fail "the pre-fork server exited with status $status after SIGTERM"
grep -q 'prefork_server: stopped' "$work/prefork.log" || fail "no clean stop in the log"
say "SIGTERM: the pre-fork server stopped cleanly (status 0)"
"$cli" inspect --dir "$metrics_dir" | sed 's/^/e2e:   /'
say "all checks passed: $sent requests, one worker killed and respawned, counters never decreased; gunicorn: $gunicorn_sent requests counted exactly"
