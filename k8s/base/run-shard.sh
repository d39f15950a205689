#!/bin/sh
# One shard of a run: the command of every pod of the Indexed Job (k8s/base/job-shards.yaml),
# shipped into the pod by kustomize's configMapGenerator (llmperf-scripts, mounted at
# /scripts). tests/e2e/test_k8s.py runs this very file, with the rendered ConfigMap's values.
#
# Runs `pytest --llmperf SUITE --llmperf-shard INDEX/COUNT` and writes, under
# LLMPERF_RESULTS_DIR/LLMPERF_RUN_ID/:
#   shard-INDEX.json    the results (--llmperf-json: provenance with commit, shard, run id)
#   junit-INDEX.xml     the JUnit report
#   index-INDEX.status  the marker merge.sh waits for: status=passed|failed|error, exit_code
# The marker is written once the index's outcome is final: after a pass (0), a failed test or
# gate (1), any exit the podFailurePolicy does not retry (2, 3, 4, 5), or the last attempt
# the index has (LLMPERF_INDEX_FAILURES >= LLMPERF_BACKOFF_PER_INDEX). An attempt Kubernetes
# will retry, or one stopped by SIGTERM (eviction, deadline, deletion), writes no marker, and
# a pod killed outright writes none: merge.sh's deadline reports such an index.
# A results directory this pod cannot write (a read-only or full volume, wrong ownership) fails
# the index before pytest starts, and a marker that cannot be written fails it after: both say
# why and exit 4, which the podFailurePolicy makes a failed Job (every index shares the volume).
# A model (LLMPERF_MODEL, or the embedded engine's packaged one) that is missing or unreadable
# fails the index before pytest too, with exit 4 and its marker (exit_code=4: the merge stops).
# Exit status: pytest's (an empty shard of a non-empty suite is 0: pytest-llmperf says so), or
# 4 as above.
set -u

fail() {  # a usage error of the run: exit 4, which the podFailurePolicy makes a failed Job
    echo "llmperf shard: error: $*" >&2
    exit 4
}

index=${JOB_COMPLETION_INDEX:-}
case $index in
    '' | *[!0-9]*) fail "JOB_COMPLETION_INDEX='$index' is not an index (an Indexed Job sets it)" ;;
esac
shards=${LLMPERF_SHARDS:-}
case $shards in
    '' | *[!0-9]* | 0) fail "LLMPERF_SHARDS='$shards' is not a shard count >= 1" ;;
esac
[ "$index" -lt "$shards" ] || fail "index $index is not below LLMPERF_SHARDS=$shards"
run_id=${LLMPERF_RUN_ID:-}
case $run_id in
    '' | -* | *- | *--* | *[!a-z0-9-]*) fail "LLMPERF_RUN_ID='$run_id' must be lowercase letters, digits and single '-'" ;;
esac
suite=${LLMPERF_SUITE:-}
[ -n "$suite" ] || fail "LLMPERF_SUITE is not set (the suite's path in the image)"
run_dir="${LLMPERF_RESULTS_DIR:-/results}/$run_id"
if [ -e "$run_dir/merged.status" ]; then
    fail "run $run_id was merged already ($run_dir/merged.status): give the new run its own run id"
fi
why() {  # the reason in a shell's or a tool's error line: "sh: 1: cannot create X: Reason"
    case $1 in
        *': '*) echo "${1##*: }" ;;
        '') echo "no reason given" ;;
        *) echo "$1" ;;
    esac
}
reason=$(mkdir -p "$run_dir" 2>&1) || fail "cannot create $run_dir ($(why "$reason"))"
# Every file of this index goes there: find out now, not after an hour of pytest.
probe="$run_dir/.write-test-$index.$$"
if ! reason=$( { : >"$probe"; } 2>&1 ); then
    fail "the results directory $run_dir is not writable ($(why "$reason")): this index could" \
        "keep neither its results nor the status marker the merge waits for"
fi
rm -f "$probe"

# The model, before pytest: missing or unreadable, every test of every index would fail on it
# (exit 1, FailIndex everywhere); exit 4 fails the Job at once. A path (the models volume) is
# checked here; the embedded engine's packaged model (a name, in the image's cache) by the
# plugin's own resolver.
model_fail() {  # as fail, with this index's marker, so that the merge stops waiting at once
    printf 'status=error\nexit_code=4\nindex=%s\nshards=%s\nrun_id=%s\nreason=model\n' \
        "$index" "$shards" "$run_id" >"$run_dir/index-$index.status" 2>/dev/null
    fail "$@"
}
model=${LLMPERF_MODEL:-}
case $model in
    */*)
        [ -e "$model" ] || model_fail "the model $model (LLMPERF_MODEL) does not exist: is the" \
            "models volume mounted and staged? (k8s/README.md)"
        { [ -r "$model" ] && { [ ! -d "$model" ] || [ -x "$model" ]; }; } ||
            model_fail "the model $model (LLMPERF_MODEL) is not readable by uid $(id -u)" \
                "(make it readable by all: chmod -R a+rX)"
        ;;
    *)
        if [ "${LLMPERF_ENGINE:-llama_cpp}" = llama_cpp ]; then
            reason=$(${LLMPERF_PYTHON:-python} -c '
import sys
from pytest_llmperf.models.packaged import DEFAULT_MODEL, ModelError, resolve_model
try:
    resolve_model(sys.argv[1] or DEFAULT_MODEL)
except (ModelError, OSError) as exc:
    sys.exit(str(exc))
' "$model" 2>&1) || model_fail "the model: $(echo "${reason:-its check could not run}" | tail -n 1)"
        fi
        ;;
esac

json="$run_dir/shard-$index.json"
junit="$run_dir/junit-$index.xml"
marker="$run_dir/index-$index.status"
rm -f "$json" "$junit" "$marker"  # an earlier attempt of this index

set -- --llmperf "$suite" --llmperf-shard "$index/$shards" \
    --llmperf-json "$json" --junitxml "$junit"
case ${LLMPERF_SAVE:-} in
    1 | true | yes | on)
        [ -n "${LLMPERF_COMMIT:-}" ] ||
            fail "LLMPERF_COMMIT is not set: baselines need the commit (k8s/new-run.sh sets it)"
        set -- "$@" --llmperf-save
        ;;
esac
if [ -n "${LLMPERF_STORE:-}" ]; then
    set -- "$@" --llmperf-store "$LLMPERF_STORE"
fi
# Extra pytest arguments, split on blanks (no quoting: keep them simple).
# shellcheck disable=SC2086
set -- "$@" ${LLMPERF_PYTEST_ARGS:-}

echo "llmperf shard $index/$shards of run $run_id, commit ${LLMPERF_COMMIT:-?}:" \
    "${LLMPERF_PYTEST:-pytest} $*"
# pytest runs as a child, so a SIGTERM (eviction, deadline, kubectl delete) reaches it and it
# stops cleanly: this shell is PID 1 and would otherwise ignore the signal.
child="" terminated=0
trap 'terminated=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' TERM INT
${LLMPERF_PYTEST:-pytest} "$@" &
child=$!
code=0
wait "$child" || code=$?
while kill -0 "$child" 2>/dev/null; do  # wait was interrupted by the trap: the real status
    code=0
    wait "$child" || code=$?
done

case $code in
    0) status=passed final=1 ;;
    1) status=failed final=1 ;;           # a test or a performance gate failed
    2 | 3 | 4 | 5) status=error final=1 ;; # not retried by the podFailurePolicy
    *) status=error final=0 ;;            # retried while the index has attempts left
esac
failures=${LLMPERF_INDEX_FAILURES:-0}
case $failures in '' | *[!0-9]*) failures=0 ;; esac
if [ "$final" = 0 ] && [ "$failures" -ge "${LLMPERF_BACKOFF_PER_INDEX:-0}" ]; then
    final=1  # the last attempt: Kubernetes fails the index
fi
if [ "$terminated" = 1 ]; then
    # Stopped from outside: an eviction (the pod comes back: the podFailurePolicy ignores
    # it), the Job's deadline or a deletion (the merge's deadline reports the index).
    final=0
fi
marker_lines() {
    echo "status=$status"
    echo "exit_code=$code"
    echo "index=$index"
    echo "shards=$shards"
    echo "run_id=$run_id"
    echo "commit=${LLMPERF_COMMIT:-}"
    echo "attempt=$failures"
    echo "host=$(hostname 2>/dev/null || echo unknown)"
    echo "finished_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
if [ "$final" = 1 ]; then
    tmp="$marker.tmp.$$"
    if ! reason=$( { marker_lines >"$tmp" && mv -f "$tmp" "$marker"; } 2>&1 ); then
        rm -f "$tmp" 2>/dev/null
        echo "llmperf shard $index/$shards: error: could not write the status marker $marker" \
            "($(why "$reason")): the merge cannot see this index's outcome ($status, exit" \
            "$code); exit 4" >&2
        exit 4
    fi
    echo "llmperf shard $index/$shards: $status (exit $code): $marker"
else
    echo "llmperf shard $index/$shards: exit $code, attempt $failures: no marker (retried or stopped)"
fi
exit "$code"
