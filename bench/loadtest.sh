#!/usr/bin/env bash
# The standard load scenario on this machine (issue 10): the provider emulator with fixed
# latencies (bench/emulator.json: STT 150 ms, embeddings 30 ms, LLM first token 250 ms, TTS
# first byte 120 ms), `switchboard serve` built with the `production` profile (as the image
# ships it) on a fresh SQLite file with one tenant, and `switchboard loadtest` placing the
# three-line call of bench/call.json.
#
#   bench/loadtest.sh                 100, 500, 1000 and 2000 concurrent calls
#   bench/loadtest.sh 300 800         the counts given
#   SOAK=1 bench/loadtest.sh          500 calls held for 10 minutes, memory sampled every second
#
# RAMP and HOLD (humantime durations, default 30s and 120s) change the run's shape;
# SWITCHBOARD_BIN runs a binary already built instead of building the production one (CI runs a
# short smoke test of this script with the debug build).
# Each count runs against a fresh emulator, server and database. Writes
# bench/results/<UTC time>/: per count the JSON report (with the per-second samples),
# calls-N-memory.csv (memory and live calls each second) and the server's and emulator's logs,
# and summary.md, the table the README quotes. Exits 1 when any call failed.
set -euo pipefail
cd "$(dirname "$0")/.."

counts=("$@")
if [[ ${SOAK:-0} == 1 ]]; then
    counts=(500)
    HOLD=${HOLD:-10m}
fi
[[ ${#counts[@]} -gt 0 ]] || counts=(100 500 1000 2000)
RAMP=${RAMP:-30s}
HOLD=${HOLD:-120s}
# Endpointing silence (600 ms) + STT 150 + the query embedding of the automatic knowledge
# retrieval 30 + LLM first token 250 + TTS first byte 120: what
# the emulated providers and the turn detector add to every reply, not the runtime.
BASELINE_MS=1150

bin=${SWITCHBOARD_BIN:-}
if [[ -z $bin ]]; then
    cargo build --profile production --bin switchboard --quiet
    bin=target/production/switchboard
fi
out="bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
# Every call holds a few sockets in each process; the default of 1024 is far too few.
ulimit -n "$(ulimit -Hn)"

export TWILIO_AUTH_TOKEN=loadtest-token
emulator_port=19190
server_port=18180
server="http://127.0.0.1:$server_port"

pids=()
work=""
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    [[ -z $work ]] || rm -rf "$work"
}
trap stop_all EXIT

# A fresh emulator, server (new SQLite file) and tenant for each count, so one run's memory
# and history never count toward the next. Logs go to $out/<name>-*.log.
start_all() {
    local name=$1
    # Another server on these ports would answer in place of ours (and measure the wrong run).
    for port in $emulator_port $server_port; do
        if (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; then
            echo "port $port is already in use: stop what listens there (another loadtest?)" >&2
            exit 1
        fi
    done
    work=$(mktemp -d)
    RUST_LOG=warn "$bin" emulate --emulator-listen "127.0.0.1:$emulator_port" \
        --script bench/emulator.json >"$out/$name-emulator.log" 2>&1 &
    pids+=($!)
    DATABASE_URL="sqlite://$work/switchboard.db?mode=rwc" \
    SWITCHBOARD_DATA_DIR="$work" \
    SWITCHBOARD_LISTEN="127.0.0.1:$server_port" \
    OPENAI_API_KEY=emulated OPENAI_BASE_URL="http://127.0.0.1:$emulator_port/v1" \
    ELEVENLABS_API_KEY=emulated ELEVENLABS_BASE_URL="http://127.0.0.1:$emulator_port" \
    RUST_LOG=warn "$bin" serve >"$out/$name-server.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -fs "$server/readyz" >/dev/null && break
        sleep 0.2
    done
    curl -fs "$server/readyz" >/dev/null ||
        { echo "the server did not start: see $out/$name-server.log" >&2; exit 1; }

    # One tenant, as a user sets it up through the API: owner, call limit, agent, number.
    local token agent
    token=$(api "$server/v1/auth/register" -d '{"tenant_name":"Load Test Motors","name":"Owner",
        "email":"owner@load.example","password":"load-test-password"}' | json "['access_token']")
    api -X PATCH "$server/v1/tenant" -H "authorization: Bearer $token" \
        -d '{"concurrent_call_limit":10000,"monthly_minute_quota":null}' >/dev/null
    agent=$(api "$server/v1/agents" -H "authorization: Bearer $token" -d '{"name":"Front desk",
        "system_prompt":"You are the front desk of Load Test Motors. Keep answers short.",
        "first_message":"Thanks for calling Load Test Motors, how can I help?"}' | json "['id']")
    api "$server/v1/phone-numbers" -H "authorization: Bearer $token" \
        -d "{\"number\":\"+15557770100\",\"agent_id\":\"$agent\",\"label\":\"Main line\"}" >/dev/null
}
api() { curl -fsS -H 'content-type: application/json' "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

{
    echo "| calls | completed | failed | voice-to-voice p50 / p95 / p99 ms | overhead p50 / p99 ms | inbound lag p99 ms | outbound gaps | CPU s per call-minute | memory per live call KiB |"
    echo "|---:|---:|---:|---|---|---:|---:|---:|---:|"
} >"$out/summary.md"

failed=0
for calls in "${counts[@]}"; do
    echo "== $calls concurrent calls (ramp $RAMP, hold $HOLD)" >&2
    start_all "calls-$calls"
    "$bin" loadtest --server "$server" --to +15557770100 --calls "$calls" \
        --ramp "$RAMP" --duration "$HOLD" --script bench/call.json \
        --baseline-ms "$BASELINE_MS" --json >"$out/calls-$calls.json" || failed=1
    python3 - "$out/calls-$calls.json" >>"$out/summary.md" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
# Memory over time, one line a second, for plotting a soak.
with open(sys.argv[1].replace(".json", "-memory.csv"), "w") as csv:
    csv.write("t_s,live_calls,resident_mib,cpu_seconds\n")
    for s in r["samples"]:
        csv.write(f"{s['t_s']:.1f},{s['live_calls']:.0f},{s['resident_bytes'] / 2**20:.1f},{s['cpu_seconds']:.2f}\n")
v, o = r["voice_to_voice_ms"], r["overhead_ms"]
f = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"
print(f"| {r['calls']} | {r['completed']} | {r['failed']} | {v['p50']} / {v['p95']} / {v['p99']} "
      f"| {o['p50']} / {o['p99']} | {f(r['inbound_lag_p99_ms'], 0)} | {r['outbound_gaps']} "
      f"| {f(r['cpu_seconds_per_call_minute'])} | {f(r['resident_kib_per_live_call'], 0)} |")
EOF
    tail -n 1 "$out/summary.md" >&2
    stop_all
done
echo "results in $out" >&2
cat "$out/summary.md"
exit "$failed"
