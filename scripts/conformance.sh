#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, server mode)
# against a Streamable HTTP MCP endpoint and prints one line:
#
#   conformance: PASSED passed, FAILED failed, TOTAL total
#
# Usage:
#   scripts/conformance.sh URL [--expect-pass N] [--suite active|all|pending]
#   scripts/conformance.sh --example [--expect-pass N] [--suite ...]
#
#   URL            the MCP endpoint, e.g. http://127.0.0.1:8080/mcp (loopback: the suite's
#                  DNS-rebinding scenario only accepts localhost URLs)
#   --example      build and start `conformance_server http` (examples/conformance_server.rs),
#                  test the URL it prints, stop it afterwards
#   --expect-pass  fail unless exactly N checks pass (to hold a gateway to the direct count)
#   --suite        the suite's scenario set: active (default; what `conformance server` runs),
#                  all (active plus the pending scenarios), pending
#
# The first run installs Node 22 and the suite (pinned below) with npm into
# target/conformance-tools/; later runs reuse them. Each run's checks (one checks.json per
# scenario) and the suite's full output are kept under target/conformance-tools/results/.
# Set CONFORMANCE_NODE to use another Node >= 22 instead of the pinned one.
#
# Exit status: 0 the suite ran and every check passed (with --expect-pass: exactly N passed);
# 1 the suite ran but checks failed (or the pass count differs from N); 2 the suite could not
# run (bad arguments, install failed, the server did not start or answers nothing, the suite
# crashed).

set -euo pipefail

CONFORMANCE_VERSION=0.1.16
NODE_VERSION=22.23.3

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLS=$ROOT/target/conformance-tools
SUITE_JS=$TOOLS/node_modules/@modelcontextprotocol/conformance/dist/index.js

die() {
    echo "conformance.sh: $*" >&2
    exit 2
}

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

url=""
example=false
expect_pass=""
suite=active
while [ $# -gt 0 ]; do
    case $1 in
        --example) example=true ;;
        --expect-pass)
            [ $# -ge 2 ] || die "--expect-pass needs a number"
            expect_pass=$2
            shift
            ;;
        --expect-pass=*) expect_pass=${1#*=} ;;
        --suite)
            [ $# -ge 2 ] || die "--suite needs a name"
            suite=$2
            shift
            ;;
        --suite=*) suite=${1#*=} ;;
        -h | --help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            [ -z "$url" ] || die "one URL only (got $url and $1)"
            url=$1
            ;;
    esac
    shift
done
if $example; then
    [ -z "$url" ] || die "give a URL or --example, not both"
else
    [ -n "$url" ] || usage
fi
case $expect_pass in
    "" | *[!0-9]*) [ -z "$expect_pass" ] || die "--expect-pass takes a number, not $expect_pass" ;;
esac
case $suite in
    active | all | pending) ;;
    *) die "--suite is active, all or pending, not $suite" ;;
esac

# Installs the pinned Node and suite unless they are there already (serialised with flock, so
# concurrent runs do not install over each other).
install_tools() {
    mkdir -p "$TOOLS"
    exec 9>"$TOOLS/.install.lock"
    if command -v flock >/dev/null; then
        flock 9
    fi
    local have_node have_suite
    have_node=$("$TOOLS/node_modules/node/bin/node" --version 2>/dev/null || true)
    have_suite=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
        "$TOOLS/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null |
        head -n 1 || true)
    if [ "$have_node" = "v$NODE_VERSION" ] && [ "$have_suite" = "$CONFORMANCE_VERSION" ]; then
        return
    fi
    command -v npm >/dev/null || die "npm is needed to install the suite"
    echo "conformance.sh: installing node@$NODE_VERSION and" \
        "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION into $TOOLS" >&2
    # node@22 fetches its platform binary in an install script: do not pass --ignore-scripts.
    if ! npm install --prefix "$TOOLS" --save-exact --no-audit --no-fund --loglevel=error \
        "node@$NODE_VERSION" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >&2; then
        die "npm install failed"
    fi
    "$TOOLS/node_modules/node/bin/node" --version >/dev/null 2>&1 ||
        die "node@$NODE_VERSION installed no runnable binary (did npm skip its install script?)"
    [ -f "$SUITE_JS" ] || die "the suite is not at $SUITE_JS after installing"
    exec 9>&-
}

install_tools
NODE=${CONFORMANCE_NODE:-$TOOLS/node_modules/node/bin/node}
node_major=$("$NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null) ||
    die "cannot run $NODE"
[ "$node_major" -ge 22 ] || die "the suite needs Node >= 22; $NODE is $("$NODE" --version)"

run_dir=$TOOLS/results/$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$run_dir"
log=$run_dir/suite.log

server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap stop_server EXIT

if $example; then
    (cd "$ROOT" && cargo build --quiet --example conformance_server) ||
        die "cannot build the conformance_server example"
    server_out=$run_dir/server.stdout
    "$TARGET/debug/examples/conformance_server" http >"$server_out" 2>"$run_dir/server.stderr" &
    server_pid=$!
    for _ in $(seq 300); do
        url=$(sed -n 's/^listening on //p' "$server_out" | head -n 1)
        [ -z "$url" ] || break
        kill -0 "$server_pid" 2>/dev/null ||
            die "the conformance server exited before listening: $(cat "$run_dir/server.stderr")"
        sleep 0.1
    done
    [ -n "$url" ] || die "the conformance server printed no address within 30 s"
    echo "conformance.sh: testing the example server at $url" >&2
fi

started=$(date +%s)
set +e
"$NODE" "$SUITE_JS" server --url "$url" --suite "$suite" --output-dir "$run_dir" >"$log" 2>&1
suite_status=$?
set -e
elapsed=$(($(date +%s) - started))

# The suite's closing summary: one line per scenario, then `Total: P passed, F failed`.
sed -n '/=== SUMMARY ===/,$p' "$log" | grep -v '^$' | grep -v '=== SUMMARY' >&2 || true
if ! grep -q '^Total: [0-9]* passed, [0-9]* failed' "$log"; then
    tail -n 30 "$log" >&2
    die "the suite did not finish (exit status $suite_status); its output is in $log"
fi
scenarios=$(sed -n 's/^Running [a-z]* suite (\([0-9]*\) scenarios).*/\1/p' "$log" | head -n 1)

# Count the checks in the scenarios' checks.json files, the suite's own record: SUCCESS and
# FAILURE count (as the suite counts them), WARNING and INFO do not. List what failed.
counts=$(RESULTS="$run_dir" "$NODE" --input-type=module -e '
    import { readdirSync, readFileSync, existsSync } from "node:fs";
    import { join } from "node:path";
    const dir = process.env.RESULTS;
    let passed = 0, failed = 0, warnings = 0, scenarios = 0;
    for (const entry of readdirSync(dir).sort()) {
        const file = join(dir, entry, "checks.json");
        if (!existsSync(file)) continue;
        scenarios++;
        const scenario = entry.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, "");
        for (const check of JSON.parse(readFileSync(file, "utf8"))) {
            if (check.status === "SUCCESS") passed++;
            if (check.status === "FAILURE") {
                failed++;
                console.error(`FAILED ${scenario}: ${check.name}: ${check.errorMessage ?? check.description}`);
            }
            if (check.status === "WARNING") {
                warnings++;
                console.error(`warning ${scenario}: ${check.name}: ${check.errorMessage ?? check.description}`);
            }
        }
    }
    console.log(`${passed} ${failed} ${warnings} ${scenarios}`);
') || die "cannot read the checks in $run_dir"
read -r passed failed warnings found <<<"$counts"
[ -z "$scenarios" ] || [ "$found" -eq "$scenarios" ] ||
    die "only $found of $scenarios scenarios recorded checks; see $log"

echo "conformance.sh: $found scenarios in ${elapsed}s, $warnings warnings; results in $run_dir" >&2
echo "conformance: $passed passed, $failed failed, $((passed + failed)) total"
# Not one check passed, not even initialize: there is no MCP server to test at the URL.
[ "$passed" -gt 0 ] || die "no check passed: is an MCP server listening at $url?"

if [ -n "$expect_pass" ]; then
    if [ "$passed" -ne "$expect_pass" ]; then
        echo "conformance.sh: expected $expect_pass passing checks, got $passed" >&2
        exit 1
    fi
    exit 0
fi
[ "$failed" -eq 0 ] || exit 1
