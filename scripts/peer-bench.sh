#!/usr/bin/env bash
# Peer-comparison benchmark: the same closed-loop load (`concurrency` calls in flight, each
# sent as soon as one is answered, for a duration) run by `mcp-hub lab` against
#
#   typescript-sdk  scripts/peers/ts/server.mjs      the official TypeScript SDK
#                   (@modelcontextprotocol/sdk, stateful StreamableHTTPServerTransport)
#   fastmcp         scripts/peers/python/server.py   FastMCP (PyPI `fastmcp`), streamable-http
#   mcp-tasks       target/release/mcp-tasks serve   on a fresh SQLite store
#
# each over Streamable HTTP in stateful session mode (Mcp-Session-Id) on 127.0.0.1, one after
# the other (never two at once, so they do not share the CPU), and prints a table: calls/s,
# p50 and p99 latency, errors, and mcp-tasks's calls/s as a multiple of each peer's, then the
# issue's targets: mcp-tasks >= 4x the TypeScript SDK's and >= 12x the Python SDK's
# throughput, with p99 <= 5 ms. FastMCP stands in for the Python SDK here (it is built on the
# official `mcp` package, the Python SDK).
#
# Not like for like, in the peers' favour: their tool is a trivial in-memory `echo`
# (examples/suites/peer-echo.toml), while mcp-tasks answers `get_tasks`, which reads a real
# store (examples/suites/peer-tasks.toml), seeded first by examples/suites/peer-tasks-seed.toml.
#
# Usage:
#   scripts/peer-bench.sh [--seconds S] [--connections N] [--calls N]
#
#   --seconds S       how long each load step runs (default: the suites' 10 s)
#   --connections N   calls in flight at once, one connection each (default: the suites' 32)
#   --calls N         run N calls per server instead of for a duration (a count, not a time)
#
# Environment:
#   PEER_NODE            the node to run the TypeScript peer with (default: node; >= 18)
#   PEER_PYTHON          the python that makes the venv (default: python3; >= 3.11)
#   PEER_START_TIMEOUT   seconds to wait for a server's address (default: 60)
#
# The first run installs the peers under target/peers/ (gitignored): the TypeScript one with
# `npm ci` from scripts/peers/ts/package-lock.json into target/peers/ts/, FastMCP with pip from
# scripts/peers/python/requirements.txt into the venv target/peers/venv/; later runs reuse them
# until those files change. It builds target/release/mcp-hub and mcp-tasks with cargo only if
# they are missing. Every server listens on port 0 (a free port the OS picks) and the script
# reads the address it prints. Each run's lab results (JSON and HTML), the servers' logs and
# the table (summary.txt) are kept in target/peers/runs/<time>/.
#
# Exit status: 0 every server was measured; 1 a lab run ran but failed a step (errors: see the
# table); 2 the benchmark could not run (bad arguments, install failed, a server did not start).
# Missing a target does not change the exit status: the table says so.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$ROOT/target/peers
HUB=$ROOT/target/release/mcp-hub
TASKS=$ROOT/target/release/mcp-tasks
NODE=${PEER_NODE:-node}
PYTHON=${PEER_PYTHON:-python3}
START_TIMEOUT=${PEER_START_TIMEOUT:-60}

die() {
    echo "peer-bench.sh: $*" >&2
    exit 2
}

say() {
    echo "peer-bench.sh: $*" >&2
}

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

is_count() {
    case $1 in
        "" | *[!0-9]* | 0*) return 1 ;;
    esac
}

seconds=""
connections=""
calls=""
while [ $# -gt 0 ]; do
    case $1 in
        --seconds | --connections | --calls)
            [ $# -ge 2 ] || die "$1 needs a number"
            is_count "$2" || die "$1 takes a positive whole number, not '$2'"
            case $1 in
                --seconds) seconds=$2 ;;
                --connections) connections=$2 ;;
                --calls) calls=$2 ;;
            esac
            shift
            ;;
        --seconds=* | --connections=* | --calls=*)
            value=${1#*=}
            is_count "$value" || die "${1%%=*} takes a positive whole number, not '$value'"
            case $1 in
                --seconds=*) seconds=$value ;;
                --connections=*) connections=$value ;;
                --calls=*) calls=$value ;;
            esac
            ;;
        -h | --help) usage ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
[ -z "$seconds" ] || [ -z "$calls" ] || die "give --seconds or --calls, not both"
is_count "$START_TIMEOUT" || die "PEER_START_TIMEOUT must be a whole number of seconds"

command -v "$NODE" >/dev/null || die "no $NODE (set PEER_NODE to a node >= 18)"
command -v npm >/dev/null || die "npm is needed to install the TypeScript SDK peer"
command -v "$PYTHON" >/dev/null || die "no $PYTHON (set PEER_PYTHON)"
node_major=$("$NODE" -p 'process.versions.node.split(".")[0]') || die "cannot run $NODE"
[ "$node_major" -ge 18 ] || die "the TypeScript SDK needs Node >= 18; $NODE is $("$NODE" --version)"

# The lab and mcp-tasks: built only if missing.
if [ ! -x "$HUB" ] || [ ! -x "$TASKS" ]; then
    say "building mcp-hub and mcp-tasks (release)"
    (cd "$ROOT" && cargo build --release --bin mcp-hub --bin mcp-tasks) ||
        die "cannot build mcp-hub and mcp-tasks"
fi

# --- Install the peers under target/peers/ (again only when their pinned files change). ---

mkdir -p "$PEERS"
exec 9>"$PEERS/.install.lock"
if command -v flock >/dev/null; then
    flock 9
fi

ts_src=$ROOT/scripts/peers/ts
ts_dir=$PEERS/ts
mkdir -p "$ts_dir"
if ! cmp -s "$ts_src/package-lock.json" "$ts_dir/.installed-lock.json" ||
    [ ! -d "$ts_dir/node_modules/@modelcontextprotocol/sdk" ]; then
    say "installing the TypeScript SDK peer into $ts_dir (npm ci)"
    cp "$ts_src/package.json" "$ts_src/package-lock.json" "$ts_dir/"
    rm -f "$ts_dir/.installed-lock.json"
    (cd "$ts_dir" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
        die "npm ci failed in $ts_dir"
    cp "$ts_src/package-lock.json" "$ts_dir/.installed-lock.json"
fi
# Next to its node_modules, so that its imports resolve.
cp "$ts_src/server.mjs" "$ts_dir/server.mjs"

py_src=$ROOT/scripts/peers/python
venv=$PEERS/venv
if ! cmp -s "$py_src/requirements.txt" "$venv/.installed-requirements.txt" ||
    [ ! -x "$venv/bin/python" ]; then
    say "installing the FastMCP peer into $venv (pip)"
    if [ ! -x "$venv/bin/python" ]; then
        "$PYTHON" -m venv "$venv" || die "cannot make a venv at $venv"
    fi
    rm -f "$venv/.installed-requirements.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$py_src/requirements.txt" >&2 || die "pip install failed"
    cp "$py_src/requirements.txt" "$venv/.installed-requirements.txt"
fi
exec 9>&-

sdk_version=$("$NODE" -p "require('$ts_dir/node_modules/@modelcontextprotocol/sdk/package.json').version")
fastmcp_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("fastmcp"))')
mcp_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')

# --- The run's folder, the suites (rewritten for the options), and the servers' lifetime. ---

run_dir=$PEERS/runs/$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$run_dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/peer-bench.XXXXXX")

server_pid=""
stop_server() {
    local pid=$server_pid
    server_pid=""
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "server $pid did not stop within 10 s of SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}
lab_pid=""
cleanup() {
    if [ -n "$lab_pid" ]; then
        kill -TERM "$lab_pid" 2>/dev/null || true
        wait "$lab_pid" 2>/dev/null || true
    fi
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Copies a suite into $tmp with the options applied.
suite() {
    local file=$ROOT/examples/suites/$1.toml out=$tmp/$1.toml
    [ -f "$file" ] || die "no suite at $file"
    cp "$file" "$out"
    if [ -n "$seconds" ]; then
        sed -i "s/^duration = .*/duration = \"${seconds}s\"/" "$out"
    fi
    if [ -n "$calls" ]; then
        sed -i "s/^duration = .*/calls = $calls/" "$out"
    fi
    if [ -n "$connections" ]; then
        sed -i "s/^concurrency = .*/concurrency = $connections/" "$out"
    fi
    echo "$out"
}

# start_server NAME LOG_TO_WATCH SED_SCRIPT COMMAND...: starts the server in the background
# (stdout and stderr in the run's folder) and waits for it to print its address; sets $url.
start_server() {
    local name=$1 watch=$2 pattern=$3
    shift 3
    local out=$run_dir/$name.stdout err=$run_dir/$name.stderr
    "$@" >"$out" 2>"$err" </dev/null &
    server_pid=$!
    url=""
    local waited=0
    while [ -z "$url" ]; do
        # Strip colour codes, should a logger add them.
        url=$(sed -e 's/\x1b\[[0-9;]*m//g' "$run_dir/$name.$watch" | sed -n "$pattern" | head -n 1)
        [ -z "$url" ] || break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid" 2>/dev/null || true
            server_pid=""
            die "$name exited before it printed its address; its output:
$(tail -n 20 "$out" "$err")"
        fi
        if [ $((waited / 10)) -ge "$START_TIMEOUT" ]; then
            die "$name printed no address within $START_TIMEOUT s (PEER_START_TIMEOUT); its output:
$(tail -n 20 "$out" "$err")"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "$name listening at $url"
}

# lab SUITE_FILE: runs the lab against $url; sets $result (the JSON's path) and $lab_status.
lab_failed=false
lab() {
    local log=$run_dir/lab-$(basename "$1" .toml).log
    # In the background and waited for, so that a signal to this script is handled at once.
    "$HUB" lab run "$1" --target "$url" --out "$run_dir" >"$log" 2>&1 </dev/null &
    lab_pid=$!
    set +e
    wait "$lab_pid"
    lab_status=$?
    set -e
    lab_pid=""
    cat "$log" >&2
    result=$(sed -n 's/^result: //p' "$log" | tail -n 1)
    [ -n "$result" ] && [ -f "$result" ] ||
        die "the lab wrote no result for $1 (exit status $lab_status); see $log"
    if [ "$lab_status" -ne 0 ]; then
        say "the lab reports a failed step in $1 (exit status $lab_status)"
        lab_failed=true
    fi
}

echo_suite=$(suite peer-echo)
tasks_seed=$ROOT/examples/suites/peer-tasks-seed.toml
tasks_suite=$(suite peer-tasks)

say "TypeScript SDK $sdk_version on Node $("$NODE" --version); FastMCP $fastmcp_version (mcp $mcp_version)"

start_server typescript-sdk stdout 's/^listening on \(http[^ ]*\)$/\1/p' \
    "$NODE" "$ts_dir/server.mjs" 0
lab "$echo_suite"
ts_result=$result
stop_server

start_server fastmcp stdout 's/^listening on \(http[^ ]*\)$/\1/p' \
    "$venv/bin/python" "$py_src/server.py" 0
lab "$echo_suite"
fastmcp_result=$result
stop_server

# mcp-tasks logs `listening; MCP at http://…/mcp address=…` on stderr. No credentials, so no
# rate limit applies; --rate-limit 0 says so outright.
start_server mcp-tasks stderr 's/.*MCP at \(http[^ ]*\).*/\1/p' \
    "$TASKS" serve --listen 127.0.0.1:0 --database-url "sqlite:$tmp/tasks.db" --rate-limit 0
lab "$tasks_seed"
[ "$lab_status" -eq 0 ] || die "seeding mcp-tasks failed; see $run_dir"
lab "$tasks_suite"
tasks_result=$result
stop_server

# --- The table. ---

if [ -n "$calls" ]; then
    load_desc="$calls calls"
else
    load_desc="${seconds:-10} s"
fi
LOAD_DESC=$load_desc NODE_VERSION=$("$NODE" --version) SDK_VERSION=$sdk_version \
    FASTMCP_VERSION=$fastmcp_version MCP_VERSION=$mcp_version \
    "$PYTHON" - "$ts_result" "$fastmcp_result" "$tasks_result" >"$run_dir/summary.txt" <<'EOF'
import json, os, sys

env = os.environ
rows = [
    (f"TypeScript SDK {env['SDK_VERSION']}", "echo", sys.argv[1]),
    (f"FastMCP {env['FASTMCP_VERSION']}", "echo", sys.argv[2]),
    ("mcp-tasks", "get_tasks", sys.argv[3]),
]
figures = []
for name, tool, path in rows:
    with open(path) as f:
        step = json.load(f)["steps"][-1]
    figures.append(
        dict(
            name=name,
            tool=tool,
            calls=step["requests"],
            rate=step["throughput"],
            p50=step["latency"]["p50"],
            p99=step["latency"]["p99"],
            errors=sum(step["errors"].values()),
            concurrency=step["load"]["concurrency"],
        )
    )
ts, fastmcp, tasks = figures


def ratio(peer):
    return tasks["rate"] / peer["rate"] if peer["rate"] > 0 else float("inf")


print(
    f"peer-bench: {tasks['concurrency']} connections, {env['LOAD_DESC']} per server; "
    f"Node {env['NODE_VERSION']}, FastMCP {env['FASTMCP_VERSION']} on mcp {env['MCP_VERSION']}"
)
print()
header = ("server", "tool", "calls", "calls/s", "p50 ms", "p99 ms", "errors", "mcp-tasks x")
table = [header]
for row in figures:
    table.append(
        (
            row["name"],
            row["tool"],
            str(row["calls"]),
            f"{row['rate']:.0f}",
            f"{row['p50']:.3f}",
            f"{row['p99']:.3f}",
            str(row["errors"]),
            "-" if row is tasks else f"{ratio(row):.1f}x",
        )
    )
widths = [max(len(r[i]) for r in table) for i in range(len(header))]
for r in table:
    cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
    print("  ".join(cells))
print()
print("mcp-tasks x: mcp-tasks's calls/s divided by that server's. The peers' tool is a trivial")
print("in-memory echo; mcp-tasks's get_tasks reads a real SQLite store.")
print()
print("the issue's targets (FastMCP stands in for the Python SDK):")
checks = [
    ("mcp-tasks calls/s >= 4x the TypeScript SDK's", f"{ratio(ts):.1f}x", ratio(ts) >= 4),
    ("mcp-tasks calls/s >= 12x the Python SDK's", f"{ratio(fastmcp):.1f}x", ratio(fastmcp) >= 12),
    ("mcp-tasks p99 <= 5 ms", f"{tasks['p99']:.3f} ms", tasks["p99"] <= 5),
]
for text, value, met in checks:
    print(f"  {text:<46} {value:>10}  {'met' if met else 'MISSED'}")
EOF
cat "$run_dir/summary.txt"
say "results in $run_dir"
if $lab_failed; then
    exit 1
fi
