#!/usr/bin/env bash
# Load harness: the gateway measured against the floor (issue 7).
#
#   bash benches/load/run.sh            # about 8 minutes once built; prints a markdown report
#
# Everything runs on this machine, on loopback: a fake b.well (examples/load_stub_upstream.rs),
# a bare pass-through proxy (examples/load_passthrough.rs: the floor of any proxy hop), the
# gateway in upstream mode and the gateway in embedded mode (SQLite). The load generator is wrk
# (Debian's package), driven by small Lua scripts written into a temporary directory. Progress
# goes to stderr; the report (markdown) goes to stdout, so `> report.md` keeps just the results.
#
# Knobs (environment): LOAD_DURATION (seconds per 64-connection run, default 10),
# LOAD_DURATION_1C (per 1-connection run, default 5), LOAD_SOAK (soak seconds, default 60),
# LOAD_PORT_BASE (first of six consecutive loopback ports, default 18081), LOAD_SKIP_BUILD=1
# (use the binaries already built). Cargo's own CARGO_TARGET_DIR is honoured.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${LOAD_DURATION:-10}
DURATION_1C=${LOAD_DURATION_1C:-5}
SOAK=${LOAD_SOAK:-60}
PORT_BASE=${LOAD_PORT_BASE:-18081}
CONNECTIONS=64
# wrk threads: the machine this was written for has 2 cores, shared by wrk and the servers.
THREADS=2
# A bearer token for upstream mode (the stub accepts anything) and embedded mode (mapped to the
# demo patient with --patient-token). Not a secret: it exists only for this run.
TOKEN="load-test-token-0123456789abcdef"
PASSCODE=743730   # the seed variables' passcode

P_STUB=$PORT_BASE
P_PASS=$((PORT_BASE + 1))
P_GW=$((PORT_BASE + 2))
P_EMB=$((PORT_BASE + 3))
P_DEF=$((PORT_BASE + 4))
P_SHM=$((PORT_BASE + 5))

log() { printf '[load] %s\n' "$*" >&2; }
WORK=$(mktemp -d)
die() {
  log "error: $*"
  # The processes' own logs go with the temporary directory: show their ends first.
  local file
  for file in "$WORK"/*.log; do
    [[ -e $file ]] || continue
    log "--- last lines of $(basename "$file")"
    tail -n 5 "$file" >&2
  done
  exit 1
}

PIDS=()
cleanup() {
  # Every process this script started, by the pid it recorded; nothing found by name.
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  rm -f "${SHM_AUDIT:-}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -----------------------------------------------------------------------------------
# wrk rather than oha: Debian ships wrk (installs in seconds), while `cargo install oha` compiles
# a few hundred crates (many minutes on 2 cores), longer than the whole measurement.
missing=()
for tool in wrk jq curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]} from Debian's registry"
  SUDO=""
  [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

# --- build -----------------------------------------------------------------------------------
cd "$ROOT"
if [[ ${LOAD_SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries (the first build takes several minutes)"
  cargo build --release --quiet --bin shl-gateway \
    --example load_stub_upstream --example load_passthrough >&2
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN="$TARGET_DIR/release"
for binary in "$BIN/shl-gateway" "$BIN/examples/load_stub_upstream" "$BIN/examples/load_passthrough"; do
  [[ -x $binary ]] || die "$binary is missing (build failed?)"
done

# --- helpers ---------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$P_STUB" "$P_PASS" "$P_GW" "$P_EMB" "$P_DEF" "$P_SHM"; do
  port_free "$port" || die "port $port is in use; set LOAD_PORT_BASE"
done

# Starts a process in the background, logging to $WORK/NAME.log; its pid lands in PIDS and in
# the variable named by $1.
start() {
  local var=$1 name=$2
  shift 2
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  printf -v "$var" '%s' "$!"
}

# Waits (at most 30 s) until $1 answers HTTP.
wait_http() {
  local url=$1 i
  for ((i = 0; i < 300; i++)); do
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  die "$url did not come up"
}

# Peak and current resident memory of a pid, in MiB: "HWM RSS".
rss_of() {
  awk '/^VmHWM/{h=$2} /^VmRSS/{r=$2} END{printf "%.1f %.1f", h/1024, r/1024}' "/proc/$1/status"
}

# The Lua driving wrk. One script for every case; environment variables select the request:
#   WRK_BODY  file holding the POST body (absent: GET)
#   WRK_AUTH  Authorization header value (optional)
#   WRK_PATHS file of request paths, one a line, used round-robin (absent: the URL's path)
#   WRK_ROTATE_TOKEN=1  a made-up bearer token per request (the production-defaults run)
#   WRK_STOP_AFTER  stop each thread after this many responses
# Each response is classified (2xx without a GraphQL "errors" member, RATE_LIMITED, 429, other)
# so that a fast wrong answer can never pass for throughput. done() prints one RESULT line.
cat >"$WORK/load.lua" <<'LUA'
-- Read at load time in every Lua state wrk makes (one per thread, and the main one).
local body_file = os.getenv("WRK_BODY")
local auth = os.getenv("WRK_AUTH")
local paths_file = os.getenv("WRK_PATHS")
local rotate = os.getenv("WRK_ROTATE_TOKEN") == "1"
local stop_after = tonumber(os.getenv("WRK_STOP_AFTER") or "")

local body = nil
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
end
wrk.method = body and "POST" or "GET"
wrk.body = body
wrk.headers["Content-Type"] = body and "application/json" or nil
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

-- Counters are globals: done() reads them from each thread with thread:get().
ok, limited, http429, other, seen = 0, 0, 0, 0, 0

local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- request() is defined only when requests vary: without it wrk sends one pre-built request,
-- which keeps the generator's own cost out of the measurement.
if (paths_file and paths_file ~= "") or rotate then
  local paths = nil
  local next_path = 0
  if paths_file and paths_file ~= "" then
    paths = {}
    for line in io.lines(paths_file) do
      if line ~= "" then table.insert(paths, line) end
    end
  end
  function init(args)
    -- Threads start at different links so they do not walk the list in step.
    next_path = (id or 0) * 17
    math.randomseed(os.time() + (id or 0))
  end
  function request()
    local path = nil
    if paths then
      next_path = next_path % #paths + 1
      path = paths[next_path]
    end
    if rotate then
      local headers = { ["Content-Type"] = "application/json",
        ["Authorization"] = string.format("Bearer rotating-%d-%d", math.random(1e9), math.random(1e9)) }
      return wrk.format(nil, path, headers, nil)
    end
    return wrk.format(nil, path)
  end
end

function response(status, headers, response_body)
  seen = seen + 1
  if status == 429 then
    http429 = http429 + 1
  elseif status >= 200 and status < 300 then
    if string.find(response_body, '"RATE_LIMITED"', 1, true) then
      limited = limited + 1
    elseif string.find(response_body, '"errors"', 1, true) then
      other = other + 1
    else
      ok = ok + 1
    end
  else
    other = other + 1
  end
  if stop_after and seen >= stop_after then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local counts = { ok = 0, limited = 0, http429 = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(counts) do
      counts[name] = counts[name] + (thread:get(name) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50=%.3f p99=%.3f requests=%d ok=%d limited=%d http429=%d other=%d sockerr=%d timeouts=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, counts.ok, counts.limited, counts.http429, counts.other,
    e.connect + e.read + e.write, e.timeout))
end
LUA

# Where the results go: one line per case, "name key=value ...".
RESULTS="$WORK/results.txt"
: >"$RESULTS"

# Runs wrk: run_wrk NAME CONNECTIONS THREADS SECONDS URL [VAR=VALUE...] (env for the Lua).
run_wrk() {
  local name=$1 connections=$2 threads=$3 seconds=$4 url=$5
  shift 5
  log "  $name: $connections connection(s), ${seconds}s"
  local out
  # `timeout` bounds wrk even if a server wedges; wrk's own -d normally ends it.
  out=$(env "$@" timeout $((seconds + 30)) wrk -t"$threads" -c"$connections" -d"${seconds}s" \
    --timeout 10s --latency -s "$WORK/load.lua" "$url") || die "wrk failed for $name"
  local line
  line=$(grep '^RESULT ' <<<"$out") || die "no result from wrk for $name"
  echo "$name ${line#RESULT }" >>"$RESULTS"
}

# One field of a result: field NAME KEY.
field() {
  awk -v name="$1" -v key="$2" '$1 == name { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' "$RESULTS" | tail -n 1
}

# Checks a case answered correctly: every request classified ok (the default), or as named.
expect_all_ok() {
  local name=$1 requests ok
  requests=$(field "$name" requests)
  ok=$(field "$name" ok)
  if [[ $requests != "$ok" || $(field "$name" sockerr) != 0 ]]; then
    log "  warning: $name: $ok of $requests requests answered correctly (see the table)"
  fi
}

# Both measurements of a case: 64 connections (throughput, p50, p99), then 1 (latency).
measure() {
  local name=$1 url=$2
  shift 2
  run_wrk "$name@64" "$CONNECTIONS" "$THREADS" "$DURATION" "$url" "$@"
  expect_all_ok "$name@64"
  run_wrk "$name@1" 1 1 "$DURATION_1C" "$url" "$@"
  expect_all_ok "$name@1"
}

# --- request bodies --------------------------------------------------------------------------
FIXTURES="$ROOT/tests/fixtures"
# The seed mutation with the gateway fields added inside createHealthLink's selection: the file
# ends with the two closing braces of createHealthLink and of the operation.
mutation_with() {
  head -n -2 "$FIXTURES/seed-mutation.graphql"
  printf '%s\n' "$@" '}' '}'
}
body() {
  jq -n --arg query "$1" --argjson variables "$2" '{query: $query, variables: $variables}'
}
SEED_VARS=$(cat "$FIXTURES/seed-variables.json")
DIRECT_VARS=$(jq '.input.mode = "DIRECT" | del(.input.securityConfig)' <<<"$SEED_VARS")
body "$(mutation_with passcode)" "$SEED_VARS" >"$WORK/plain.json"
body "$(mutation_with passcode qrCodeSvg)" "$SEED_VARS" >"$WORK/qr.json"
body "$(mutation_with passcode)" "$DIRECT_VARS" >"$WORK/direct.json"
jq -n --arg passcode "$PASSCODE" '{recipient: "Load test", passcode: $passcode}' >"$WORK/manifest.json"

# --- processes -------------------------------------------------------------------------------
# The bench profile: quotas so large they never refuse (BURST/PERIOD with at least 1 µs per
# request: the quota arithmetic refuses finer rates), concurrency raised, logs at warn.
NEVER="1000000000/1h"
BENCH_PROFILE=(
  --log-filter warn
  --link-quota-per-caller "$NEVER" --link-quota-per-ip "$NEVER" --http-quota-per-ip "$NEVER"
  --shl-quota-per-ip "$NEVER" --shl-quota-per-link "$NEVER"
  --max-concurrent-requests 4096
  --graphiql false
)

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting the stub, the passthrough and the gateway (upstream mode)"
start STUB_PID stub "$BIN/examples/load_stub_upstream" "127.0.0.1:$P_STUB"
start PASS_PID passthrough "$BIN/examples/load_passthrough" "127.0.0.1:$P_PASS" \
  "http://127.0.0.1:$P_STUB/v1/graphql"
mkdir -p "$WORK/gw" "$WORK/emb" "$WORK/def"
start GW_PID gateway "$BIN/shl-gateway" --listen "127.0.0.1:$P_GW" \
  --upstream-url "http://127.0.0.1:$P_STUB/v1/graphql" --data-dir "$WORK/gw" "${BENCH_PROFILE[@]}"
wait_http "http://127.0.0.1:$P_STUB/"
wait_http "http://127.0.0.1:$P_PASS/"
wait_http "http://127.0.0.1:$P_GW/healthz"

STUB_URL="http://127.0.0.1:$P_STUB/v1/graphql"
PASS_URL="http://127.0.0.1:$P_PASS/v1/graphql"
GW_URL="http://127.0.0.1:$P_GW/graphql"

# One request of each kind, checked, before measuring: a misconfigured gateway would otherwise
# be measured answering errors very fast.
sanity=$(curl -s --max-time 10 "$GW_URL" -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $TOKEN" --data-binary @"$WORK/qr.json")
jq -e '.data.createHealthLink.qrCodeSvg | startswith("<svg")' >/dev/null <<<"$sanity" ||
  die "the gateway did not answer the seed mutation: $sanity"
GW_RSS_START=$(rss_of "$GW_PID")

log "(a) the floor: the stub directly, then through the passthrough"
measure direct "$STUB_URL" WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"
measure passthrough "$PASS_URL" WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"

log "(b) the gateway in upstream mode, without and with qrCodeSvg"
measure gw_plain "$GW_URL" WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"
measure gw_qr "$GW_URL" WRK_BODY="$WORK/qr.json" WRK_AUTH="Bearer $TOKEN"

# The same gateway with its audit trail on tmpfs, where fdatasync costs nothing: the difference
# from gw_plain is the price of a durable record (two per createHealthLink: attempt, outcome).
if [[ -d /dev/shm && -w /dev/shm ]]; then
  SHM_AUDIT="/dev/shm/shl-gateway-load-$$.jsonl"
  mkdir -p "$WORK/gw-shm"
  start GW_SHM_PID gateway-shm "$BIN/shl-gateway" --listen "127.0.0.1:$P_SHM" \
    --upstream-url "$STUB_URL" --data-dir "$WORK/gw-shm" --audit-log "$SHM_AUDIT" "${BENCH_PROFILE[@]}"
  wait_http "http://127.0.0.1:$P_SHM/healthz"
  measure gw_plain_audit_tmpfs "http://127.0.0.1:$P_SHM/graphql" WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"
  kill "$GW_SHM_PID"
  wait "$GW_SHM_PID" 2>/dev/null || true
  rm -f "$SHM_AUDIT"
fi

log "(b) mixed: 48 connections plain and 16 with qrCodeSvg, at the same time"
run_wrk mixed_qr 16 1 "$DURATION" "$GW_URL" WRK_BODY="$WORK/qr.json" WRK_AUTH="Bearer $TOKEN" &
mixed_qr_pid=$!
run_wrk mixed_plain 48 1 "$DURATION" "$GW_URL" WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"
wait "$mixed_qr_pid" || die "the qrCodeSvg half of the mixed run failed"
expect_all_ok mixed_plain
expect_all_ok mixed_qr

log "memory: 100,000 requests, then a ${SOAK}s soak sampled every 5 s"
run_wrk soak_100k "$CONNECTIONS" "$THREADS" 120 "$GW_URL" WRK_BODY="$WORK/plain.json" \
  WRK_AUTH="Bearer $TOKEN" WRK_STOP_AFTER=$((100000 / THREADS))
GW_RSS_100K=$(rss_of "$GW_PID")
SAMPLES="$WORK/rss-samples.txt"
: >"$SAMPLES"
(
  # Bounded sampler: one sample every 5 s for the soak's length, plus one.
  for ((i = 0; i <= SOAK / 5; i++)); do
    [[ -r /proc/$GW_PID/status ]] || break
    echo "$((i * 5)) $(rss_of "$GW_PID")" >>"$SAMPLES"
    sleep 5
  done
) &
sampler_pid=$!
PIDS+=("$sampler_pid")
# The soak mixes in qrCodeSvg (one connection in eight) so the blocking pool is exercised too.
run_wrk soak_qr 8 1 "$SOAK" "$GW_URL" WRK_BODY="$WORK/qr.json" WRK_AUTH="Bearer $TOKEN" &
soak_qr_pid=$!
run_wrk soak "$((CONNECTIONS - 8))" 1 "$SOAK" "$GW_URL" WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"
wait "$soak_qr_pid" || die "the qrCodeSvg half of the soak failed"
wait "$sampler_pid" || true
GW_RSS_END=$(rss_of "$GW_PID")

log "(c) embedded mode (SQLite): createHealthLink, manifests, direct files"
start EMB_PID embedded "$BIN/shl-gateway" --listen "127.0.0.1:$P_EMB" \
  --database-url "sqlite://$WORK/emb/bench.db?mode=rwc" --demo on \
  --patient-token "$TOKEN=demo-alex" --data-dir "$WORK/emb" --link-validity 1h \
  --direct-link-validity 1h "${BENCH_PROFILE[@]}"
wait_http "http://127.0.0.1:$P_EMB/healthz"
EMB_URL="http://127.0.0.1:$P_EMB/graphql"

# Creates a link with the given body and prints the path of its manifest URL (decoded from the
# shlink: payload in the viewer URL).
create_link_path() {
  local answer payload
  answer=$(curl -s --max-time 30 "$EMB_URL" -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $TOKEN" --data-binary @"$1")
  payload=$(jq -r '.data.createHealthLink.content[0].attachment.url | split("#shlink:/")[1]' \
    <<<"$answer") || die "embedded createHealthLink failed: $answer"
  payload=$(tr -- '-_' '+/' <<<"$payload")
  while ((${#payload} % 4)); do payload+="="; done
  base64 -d <<<"$payload" | jq -r .url | sed "s#^http://127.0.0.1:$P_EMB##"
}
# 64 links of each kind, used round-robin: each passcode link has a lifetime budget of 5 wrong
# passcodes, and a right passcode's reservation is refunded only after its hash is verified, so
# many concurrent fetches of one link would hold its whole budget at once (see BENCHMARKS.md).
: >"$WORK/manifest-paths.txt"
: >"$WORK/direct-paths.txt"
for ((i = 0; i < 64; i++)); do
  create_link_path "$WORK/plain.json" >>"$WORK/manifest-paths.txt"
  echo "$(create_link_path "$WORK/direct.json")?recipient=Load%20test" >>"$WORK/direct-paths.txt"
done
EMB_BASE="http://127.0.0.1:$P_EMB/"

EMB_RSS_LINKS=$(rss_of "$EMB_PID")
measure emb_create_direct "$EMB_URL" WRK_BODY="$WORK/direct.json" WRK_AUTH="Bearer $TOKEN"
EMB_RSS_DIRECT=$(rss_of "$EMB_PID")
measure emb_direct_file "$EMB_BASE" WRK_PATHS="$WORK/direct-paths.txt"
EMB_RSS_FILES=$(rss_of "$EMB_PID")
measure emb_create_passcode "$EMB_URL" WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"
EMB_RSS_PASSCODE=$(rss_of "$EMB_PID")
measure emb_manifest "$EMB_BASE" WRK_BODY="$WORK/manifest.json" WRK_PATHS="$WORK/manifest-paths.txt"
EMB_RSS_END=$(rss_of "$EMB_PID")

kill "$EMB_PID"
wait "$EMB_PID" 2>/dev/null || true

log "production defaults (upstream mode, default quotas): what one address gets in ${DURATION_1C}s"
# Two fresh gateways, so the first run's spent quotas do not shape the second.
start DEF_PID defaults "$BIN/shl-gateway" --listen "127.0.0.1:$P_DEF" \
  --upstream-url "$STUB_URL" --data-dir "$WORK/def" --log-filter warn
wait_http "http://127.0.0.1:$P_DEF/healthz"
run_wrk defaults_one_token 8 1 "$DURATION_1C" "http://127.0.0.1:$P_DEF/graphql" \
  WRK_BODY="$WORK/plain.json" WRK_AUTH="Bearer $TOKEN"
kill "$DEF_PID"
wait "$DEF_PID" 2>/dev/null || true
start DEF_PID defaults2 "$BIN/shl-gateway" --listen "127.0.0.1:$P_DEF" \
  --upstream-url "$STUB_URL" --data-dir "$WORK/def" --log-filter warn
wait_http "http://127.0.0.1:$P_DEF/healthz"
run_wrk defaults_rotating_tokens 8 1 "$DURATION_1C" "http://127.0.0.1:$P_DEF/graphql" \
  WRK_BODY="$WORK/plain.json" WRK_ROTATE_TOKEN=1

# --- report ----------------------------------------------------------------------------------
GW_RSS_FINAL=$(rss_of "$GW_PID")
f() { field "$@"; }
# Floating-point helpers (awk): ratio A B, and a verdict for "A OP B".
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }
verdict() { awk -v a="$1" -v b="$3" "BEGIN { print ((a $2 b) ? \"met\" : \"**missed**\") }"; }

{
  echo "## Load results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk $THREADS threads)"
  echo
  echo "Load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg) (the machine's other users share the cores)."
  echo "Each case: ${DURATION}s at $CONNECTIONS connections, then ${DURATION_1C}s at 1 connection. Latencies in ms."
  echo "\`ok\` counts answers that were right (2xx, no GraphQL \`errors\`), of all answers."
  echo
  echo "| case | req/s @64 | p50 @64 | p99 @64 | p50 @1 | ok @64 |"
  echo "|---|---:|---:|---:|---:|---:|"
  for name in direct passthrough gw_plain gw_plain_audit_tmpfs gw_qr emb_create_direct emb_direct_file emb_create_passcode emb_manifest; do
    [[ -n $(f "$name@64" rps) ]] || continue
    printf '| %s | %s | %s | %s | %s | %s/%s |\n' "$name" "$(f "$name@64" rps)" \
      "$(f "$name@64" p50)" "$(f "$name@64" p99)" "$(f "$name@1" p50)" \
      "$(f "$name@64" ok)" "$(f "$name@64" requests)"
  done
  for name in mixed_plain mixed_qr soak soak_qr; do
    printf '| %s | %s | %s | %s | - | %s/%s |\n' "$name" "$(f "$name" rps)" "$(f "$name" p50)" \
      "$(f "$name" p99)" "$(f "$name" ok)" "$(f "$name" requests)"
  done
  echo
  echo "### Against the targets"
  echo
  echo "| target | measured | verdict |"
  echo "|---|---|---|"
  gw_rps=$(f gw_plain@64 rps); pass_rps=$(f passthrough@64 rps)
  r=$(calc "$gw_rps / $pass_rps")
  echo "| gateway req/s >= 0.5x passthrough (64 conn.) | ${r}x ($gw_rps vs $pass_rps) | $(verdict "$r" '>=' 0.5) |"
  r=$(calc "$gw_rps / $(f direct@64 rps)")
  echo "| (for reference) gateway req/s / direct stub | ${r}x | - |"
  for p in p50 p99; do
    r=$(calc "$(f gw_plain@64 $p) / $(f passthrough@64 $p)")
    echo "| gateway $p within 2x passthrough (64 conn.) | ${r}x ($(f gw_plain@64 $p) vs $(f passthrough@64 $p) ms) | $(verdict "$r" '<=' 2) |"
  done
  d=$(calc "$(f gw_plain@1 p50) - $(f direct@1 p50)")
  echo "| gateway adds < 0.5 ms p50 over the direct call (1 conn.) | +$d ms ($(f gw_plain@1 p50) vs $(f direct@1 p50)) | $(verdict "$d" '<' 0.5) |"
  d=$(calc "$(f passthrough@1 p50) - $(f direct@1 p50)")
  echo "| (for reference) passthrough adds (1 conn.) | +$d ms | - |"
  if [[ -n $(f gw_plain_audit_tmpfs@1 p50) ]]; then
    d=$(calc "$(f gw_plain_audit_tmpfs@1 p50) - $(f direct@1 p50)")
    r=$(calc "$(f gw_plain_audit_tmpfs@64 rps) / $pass_rps")
    echo "| (for reference) audit trail on tmpfs (no fsync): adds, 1 conn.; req/s vs passthrough | +$d ms; ${r}x | - |"
  fi
  d=$(calc "$(f gw_qr@1 p50) - $(f gw_plain@1 p50)")
  echo "| qrCodeSvg adds < 4 ms p50 (1 conn.) | +$d ms | $(verdict "$d" '<' 4) |"
  r=$(calc "$(f mixed_plain p99) / $(f passthrough@64 p99)")
  echo "| mixed load: plain p99 within 2x passthrough p99 | ${r}x ($(f mixed_plain p99) ms; plain alone $(f gw_plain@64 p99) ms) | $(verdict "$r" '<=' 2) |"
  echo "| embedded createHealthLink < 5 ms p50, no passcode hash (DIRECT, 1 conn.) | $(f emb_create_direct@1 p50) ms | $(verdict "$(f emb_create_direct@1 p50)" '<' 5) |"
  echo "| (for reference) with the passcode hash (PASSCODE, 1 conn.) | $(f emb_create_passcode@1 p50) ms | - |"
  read -r hwm100k rss100k <<<"$GW_RSS_100K"
  echo "| RSS < 64 MB after 100k requests (upstream mode; this run: $(f soak_100k requests)) | $rss100k MiB (peak $hwm100k) | $(verdict "$rss100k" '<' 64) |"
  first=$(awk 'NR == 2 { print $3 }' "$SAMPLES"); last=$(awk 'END { print $3 }' "$SAMPLES")
  growth=$(calc "$last - $first")
  echo "| RSS not growing over the ${SOAK}s soak (5 s to end; < 2 MiB) | +$growth MiB ($first -> $last) | $(verdict "$growth" '<' 2) |"
  read -r hwm_emb rss_emb <<<"$EMB_RSS_END"
  echo "| (embedded) RSS < 64 MB plus 2 argon2id work areas of 19 MiB (\`--max-concurrent-passcode-hashes 2\`) | $rss_emb MiB (peak $hwm_emb) | $(verdict "$rss_emb" '<' 102) |"
  echo
  echo "### Memory (MiB: peak VmHWM / current VmRSS)"
  echo
  echo "| process | when | peak | RSS |"
  echo "|---|---|---:|---:|"
  read -r a b <<<"$GW_RSS_START"; echo "| gateway (upstream) | after start and one request | $a | $b |"
  read -r a b <<<"$GW_RSS_100K"; echo "| gateway (upstream) | after (a), (b), mixed and $(f soak_100k requests) more requests | $a | $b |"
  read -r a b <<<"$GW_RSS_END"; echo "| gateway (upstream) | after the soak | $a | $b |"
  read -r a b <<<"$GW_RSS_FINAL"; echo "| gateway (upstream) | at the end | $a | $b |"
  read -r a b <<<"$EMB_RSS_LINKS"; echo "| gateway (embedded) | after creating 128 links | $a | $b |"
  read -r a b <<<"$EMB_RSS_DIRECT"; echo "| gateway (embedded) | after DIRECT creations (no hash) | $a | $b |"
  read -r a b <<<"$EMB_RSS_FILES"; echo "| gateway (embedded) | after direct file fetches | $a | $b |"
  read -r a b <<<"$EMB_RSS_PASSCODE"; echo "| gateway (embedded) | after PASSCODE creations (argon2id) | $a | $b |"
  read -r a b <<<"$EMB_RSS_END"; echo "| gateway (embedded) | after manifest fetches (argon2id verify) | $a | $b |"
  echo
  echo "Soak samples (s, peak, RSS): $(awk '{ printf "%s:%s/%s  ", $1, $2, $3 }' "$SAMPLES")"
  echo
  echo "### Production defaults (one address, ${DURATION_1C}s, 8 connections)"
  echo
  echo "| run | answers | created | RATE_LIMITED (GraphQL) | 429 (http_per_ip) | other |"
  echo "|---|---:|---:|---:|---:|---:|"
  for name in defaults_one_token defaults_rotating_tokens; do
    echo "| $name | $(f $name requests) | $(f $name ok) | $(f $name limited) | $(f $name http429) | $(f $name other) |"
  done
  echo
  echo "Defaults: links 5/1m per caller and 20/1m per address, 600/1m requests per address,"
  echo "SHL requests 30/1m per address and 60/1m per link, 512 requests in flight."
}
log "done"
