#!/usr/bin/env bash
# A .ci/run stage: builds docker/Dockerfile.cpu for real with podman and runs it.
#   (a) podman, buildah, mmdebstrap, runc & co. installed with apt-get when absent;
#   (b) the Dockerfile's base (FROM python:3.11-slim) made locally with mmdebstrap when absent
#       (no container registry is reachable here): Debian bookworm's Python 3.11;
#   (c) a containers.conf (runc, ulimits this host allows) and the build's pip.conf + CA bundle
#       (PIP_CERT) written in a temporary directory, nothing system-wide edited;
#   (d) the image built (its layers cached in podman's storage between runs: the
#       llama-cpp-python wheel stage is rebuilt only when its pins change);
#   (e) the embedded suite run in the image as uid 1000 and as another uid (--user 1234:1234),
#       results on a host folder mounted with :U;
#   (f) the Kubernetes pod scripts (k8s/base/run-shard.sh for 2 indexes at once, then
#       merge.sh) run in the image with the rendered CPU overlay's run ConfigMap as the
#       environment: every exit 0 and the merged results hold every test of every shard;
#   (g) each step's seconds printed.
# Any failure: one line "container_check: error: ..." and a non-zero exit. Nothing is skipped.
# Environment: LLMPERF_CONTAINER_IMAGE (the tag built), DEBIAN_MIRROR, PYTHON (one with PyYAML,
# for the rendered ConfigMap; default .venv/bin/python), LLMPERF_CONTAINER_PYTEST_ARGS (extra
# pytest arguments, split on blanks, for every run in the image: e.g. "-k short_chat" for a
# quick check on a busy machine; empty by default: the whole suite).
# Every run in the image must pass its gates: on a machine shared with other CPU-heavy jobs,
# llama.cpp's threads wait for CPUs and the suite's latency gates fail (the run says the CPUs
# were oversubscribed); run it alone.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${LLMPERF_CONTAINER_IMAGE:-localhost/pytest-llmperf-cpu:check}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-.venv/bin/python}
read -r -a EXTRA <<<"${LLMPERF_CONTAINER_PYTEST_ARGS:-}"
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH=$(git branch --show-current 2>/dev/null || echo "")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/llmperf-container-check.XXXXXX")
LOG="$WORK/step.log"
trap 'rm -rf "$WORK" 2>/dev/null || true' EXIT

die() {
    echo "container_check: error: $*" >&2
    exit 1
}

# step NAME FUNCTION: runs FUNCTION with errexit in a subshell, its output in the log, and
# prints its seconds; a failure prints the log's tail and one error line, and stops the script.
step() {
    local name=$1 fn=$2 t0 rc
    t0=$(date +%s.%N)
    set +e
    ( set -euo pipefail; "$fn" ) >"$LOG" 2>&1
    rc=$?
    set -e
    if [ "$rc" != 0 ]; then
        tail -n 40 "$LOG" | sed 's/^/  | /' >&2
        die "step '$name' failed (exit $rc): $(tail -n 1 "$LOG")"
    fi
    awk -v n="$name" -v a="$t0" -v b="$(date +%s.%N)" \
        'BEGIN { printf "container_check: %-28s %7.1f s\n", n, b - a }'
}

# --- (a) -------------------------------------------------------------------------------------
TOOLS="podman buildah mmdebstrap runc slirp4netns fuse-overlayfs newuidmap"
install_tools() {
    local missing="" tool
    for tool in $TOOLS; do
        command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
    done
    [ -n "$missing" ] || { echo "all present"; return 0; }
    echo "missing:$missing"
    command -v apt-get >/dev/null 2>&1 || {
        echo "no apt-get on this machine: podman cannot be installed here"; return 1; }
    [ "$(id -u)" = 0 ] || { echo "apt-get needs root to install podman"; return 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        podman buildah mmdebstrap runc slirp4netns fuse-overlayfs uidmap
}

# --- (c), before (b): podman reads CONTAINERS_CONF from here on ------------------------------
write_conf() {
    # crun fails on this host's hybrid cgroups; podman's default ulimits are refused without
    # CAP_SYS_RESOURCE (nofile 20000 and nproc 32768 are allowed).
    cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
    # pip inside the build trusts the CA bundle the host's pip uses (a proxy re-signs HTTPS).
    local ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    [ -r "$ca" ] || { echo "no CA bundle at $ca (set PIP_CERT)"; return 1; }
    cp "$ca" "$WORK/build-ca.crt"
    printf '[global]\ncert = /tmp/build-ca.crt\n' >"$WORK/pip.conf"
}

# --- (b) -------------------------------------------------------------------------------------
BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' docker/Dockerfile.cpu)
make_base() {
    local ref="docker.io/library/$BASE"
    if podman image exists "$ref"; then
        echo "$ref present"
        return 0
    fi
    local security=${DEBIAN_MIRROR%/debian}/debian-security
    mmdebstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates,passwd bookworm \
        "$WORK/base.tar" "deb $DEBIAN_MIRROR bookworm bookworm-updates main" \
        "deb $security bookworm-security main"
    podman import "$WORK/base.tar" localhost/debian-py:latest
    podman tag localhost/debian-py:latest "$ref"
    rm -f "$WORK/base.tar"
}

# --- (d) -------------------------------------------------------------------------------------
build() {
    # --ignorefile: the build context the .dockerignore beside the Dockerfile keeps (BuildKit
    # finds it by its name; podman 4.3 is given it), not the checkout's virtual environments.
    podman build --pull=never -f docker/Dockerfile.cpu \
        --ignorefile docker/Dockerfile.cpu.dockerignore \
        -v "$WORK/build-ca.crt:/tmp/build-ca.crt:ro" -v "$WORK/pip.conf:/etc/pip.conf:ro" \
        --build-arg LLMPERF_COMMIT="$COMMIT" --build-arg LLMPERF_BRANCH="$BRANCH" \
        -t "$IMAGE" .
    # The commit its runs are saved under is this one (a stale cached layer would keep another).
    local carried
    carried=$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" \
        | sed -n 's/^LLMPERF_COMMIT=//p')
    [ "$carried" = "$COMMIT" ] || {
        echo "the image carries LLMPERF_COMMIT=$carried, not this checkout's $COMMIT"; return 1; }
    podman image inspect --format '{{.Size}}' "$IMAGE" \
        | awk '{ printf "image size: %.0f MB\n", $1 / 1e6 }'
}

# --- (e) -------------------------------------------------------------------------------------
# count FILE: "TESTS PASSED" of a results document (--llmperf-json or llmperf report --merged)
count() {
    python3 -c '
import json, sys
tests = json.load(open(sys.argv[1]))["tests"]
print(len({t["nodeid"] for t in tests}), sum(t["outcome"] == "passed" for t in tests))
' "$1"
}
suite_as() {  # suite_as USER: the image's suite as USER, results on a :U mount
    local user=$1 dir="$WORK/results-${1%%:*}"
    mkdir -p "$dir"
    podman run --rm --network=none --user "$user" -v "$dir:/results:U" "$IMAGE" \
        pytest --llmperf example_suites/cpu -p no:cacheprovider \
        --llmperf-json /results/llmperf.json ${EXTRA[@]+"${EXTRA[@]}"}
    set -- $(count "$dir/llmperf.json")
    echo "as $user: $1 tests, $2 passed"
    [ "$1" -gt 0 ] && [ "$2" -gt 0 ]
    echo "$1" >"$WORK/suite-tests"
}
suite_1000() { suite_as 1000:1000; }
suite_1234() { suite_as 1234:1234; }

# --- (f) -------------------------------------------------------------------------------------
shards() {
    local run_id dir="$WORK/k8s-results" env="$WORK/run.env" pids="" i code failed=""
    run_id="check-$(date +%s)-${COMMIT:0:8}"
    mkdir -p "$dir"
    # The run ConfigMap as the CPU overlay renders it, the run's values as new-run.sh sets them.
    kubectl kustomize k8s/overlays/cpu | "$PYTHON" -c '
import sys, yaml
for doc in yaml.safe_load_all(sys.stdin):
    if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("llmperf-run"):
        for key, value in sorted(doc["data"].items()):
            print(f"{key}={value}")
' >"$env"
    grep -q '^LLMPERF_SUITE=' "$env" || { echo "no run ConfigMap rendered"; return 1; }
    {
        echo "LLMPERF_SHARDS=2"
        echo "LLMPERF_RUN_ID=$run_id"
        echo "LLMPERF_COMMIT=$COMMIT"
        echo "LLMPERF_BRANCH=$BRANCH"
        echo "LLMPERF_THREADS=1"
        echo "LLMPERF_MERGE_POLL_S=2"
        echo "LLMPERF_MERGE_WAIT_S=900"
        [ -z "${LLMPERF_CONTAINER_PYTEST_ARGS:-}" ] ||
            echo "LLMPERF_PYTEST_ARGS=$(sed -n 's/^LLMPERF_PYTEST_ARGS=//p' "$env") ${EXTRA[*]}"
    } >>"$env"
    # The first run makes the volume's owner uid 1000 (:U), as fsGroup does in the cluster.
    for i in 0 1; do
        podman run --rm --network=none --user 1000:1000 --env-file "$env" \
            -e JOB_COMPLETION_INDEX="$i" -v "$PWD/k8s/base:/scripts:ro" \
            -v "$dir:/results:U" "$IMAGE" /bin/sh /scripts/run-shard.sh \
            >"$WORK/shard-$i.log" 2>&1 &
        pids="$pids $!"
    done
    i=0
    for pid in $pids; do
        code=0
        wait "$pid" || code=$?
        tail -n 3 "$WORK/shard-$i.log"
        [ "$code" = 0 ] || { cat "$WORK/shard-$i.log"; failed="$failed $i(exit $code)"; }
        i=$((i + 1))
    done
    [ -z "$failed" ] || { echo "shard index(es)$failed"; return 1; }
    podman run --rm --network=none --user 1000:1000 --env-file "$env" \
        -v "$PWD/k8s/base:/scripts:ro" -v "$dir:/results:U" "$IMAGE" /bin/sh /scripts/merge.sh
    local run="$dir/$run_id" total=0 n merged
    for i in 0 1; do
        set -- $(count "$run/shard-$i.json")
        total=$((total + $1))
    done
    set -- $(count "$run/results.json")
    merged=$1
    n=$(cat "$WORK/suite-tests")
    echo "merged: $merged tests (shards: $total, the suite: $n)"
    [ "$merged" = "$total" ] && [ "$merged" = "$n" ] || {
        echo "the merged results do not hold every test of the run"; return 1; }
    grep -q '^exit_code=0$' "$run/merged.status"
    cat "$run/summary.txt"
}

total0=$(date +%s)
step "podman and tools" install_tools
step "configuration" write_conf
export CONTAINERS_CONF="$WORK/containers.conf"
step "base image ($BASE)" make_base
step "build" build
grep '^image size' "$LOG"
step "suite as uid 1000" suite_1000
grep '^as ' "$LOG"
step "suite as uid 1234" suite_1234
grep '^as ' "$LOG"
step "k8s shards 0,1 + merge" shards
grep '^merged' "$LOG"
echo "container_check: passed in $(( $(date +%s) - total0 )) s ($IMAGE, commit ${COMMIT:0:12})"
