#!/bin/sh
# The merge of a run: the command of the merge Job's pod (k8s/base/job-merge.yaml), shipped by
# kustomize's configMapGenerator like run-shard.sh. tests/e2e/test_k8s.py runs this very file.
#
# Waits until every index 0..LLMPERF_SHARDS-1 of LLMPERF_RUN_ID has written its marker
# (LLMPERF_RESULTS_DIR/LLMPERF_RUN_ID/index-I.status), at most LLMPERF_MERGE_WAIT_S seconds,
# then merges the shards' results with `llmperf report` (the trend over the baselines pulled
# from LLMPERF_STORE) into report.html, report.md and results.json (the merged results), and
# writes summary.txt (one line per index) and merged.status. Only this run's directory is read: other runs' files are not.
# Exit status: 0 every index passed; 1 an index failed a test or gate (and none errored);
# 2 an index errored, never wrote its marker before the deadline, or the merge failed.
set -u

fail() {
    echo "llmperf merge: error: $*" >&2
    exit 2
}

shards=${LLMPERF_SHARDS:-}
case $shards in
    '' | *[!0-9]* | 0) fail "LLMPERF_SHARDS='$shards' is not a shard count >= 1" ;;
esac
run_id=${LLMPERF_RUN_ID:-}
case $run_id in
    '' | -* | *- | *--* | *[!a-z0-9-]*) fail "LLMPERF_RUN_ID='$run_id' must be lowercase letters, digits and single '-'" ;;
esac
run_dir="${LLMPERF_RESULTS_DIR:-/results}/$run_id"
wait_s=${LLMPERF_MERGE_WAIT_S:-14400}
poll_s=${LLMPERF_MERGE_POLL_S:-15}
mkdir -p "$run_dir" || fail "cannot create $run_dir"

missing_indexes() {
    i=0
    out=""
    while [ "$i" -lt "$shards" ]; do
        [ -f "$run_dir/index-$i.status" ] || out="$out $i"
        i=$((i + 1))
    done
    echo "$out"
}

start=$(date +%s)
missing=$(missing_indexes)
while [ -n "$missing" ]; do
    waited=$(( $(date +%s) - start ))
    if [ "$waited" -ge "$wait_s" ]; then
        echo "llmperf merge: waited ${waited}s: no marker from index(es)$missing" >&2
        break
    fi
    echo "llmperf merge: run $run_id: waiting for index(es)$missing (${waited}s)"
    sleep "$poll_s"
    missing=$(missing_indexes)
done

value() {  # value KEY FILE: KEY=... from a marker
    sed -n "s/^$1=//p" "$2" | head -n 1
}

passed="" failed="" errored="" have=""  # have: the indexes with a results file
summary="$run_dir/summary.txt.tmp.$$"
: >"$summary"
i=0
while [ "$i" -lt "$shards" ]; do
    marker="$run_dir/index-$i.status"
    if [ -f "$marker" ]; then
        status=$(value status "$marker")
        code=$(value exit_code "$marker")
        [ "$(value run_id "$marker")" = "$run_id" ] || status=error
    else
        status=missing code=-
    fi
    case $status in
        passed) passed="$passed $i" ;;
        failed) failed="$failed $i" ;;
        *) errored="$errored $i" ;;
    esac
    if [ "$status" = passed ] || [ "$status" = failed ]; then
        if [ -f "$run_dir/shard-$i.json" ]; then
            have="$have $i"
        else
            errored="$errored $i"
            status="$status-no-results"
        fi
    fi
    echo "index $i: $status (exit $code)" >>"$summary"
    i=$((i + 1))
done

set --
if [ -n "${LLMPERF_STORE:-}" ]; then
    # The trend: every baseline in the store, this run's included (the shards saved them).
    if ${LLMPERF_CLI:-llmperf} baselines pull "$LLMPERF_STORE" --dir "$run_dir/baselines"; then
        set -- --baselines "$run_dir/baselines"
    else
        echo "llmperf merge: warning: could not pull $LLMPERF_STORE: the report has no trend" >&2
    fi
fi
report=0
if [ -n "$have" ]; then
    [ -z "$errored" ] || set -- "$@" --allow-partial
    # The files as words of their own ("$@", sh's one array): a path may hold a space.
    set -- "$@" --json
    for i in $have; do
        set -- "$@" "$run_dir/shard-$i.json"
    done
    # shellcheck disable=SC2086
    ${LLMPERF_CLI:-llmperf} report --title "pytest-llmperf run $run_id" \
        --html "$run_dir/report.html" --markdown "$run_dir/report.md" \
        --merged "$run_dir/results.json" "$@" \
        || report=$?
else
    echo "llmperf merge: no index wrote results" >&2
    report=2
fi

if [ -n "$errored" ] || [ "$report" != 0 ]; then
    code=2 verdict="error: index(es)${errored:- none} errored or never ran; report exit $report"
elif [ -n "$failed" ]; then
    code=1 verdict="failed: index(es)$failed failed a test or gate"
else
    code=0 verdict="passed: every index passed"
fi
{
    echo "run $run_id, commit ${LLMPERF_COMMIT:-?}, $shards shard(s): $verdict"
    cat "$summary"
} >"$summary.2" && mv -f "$summary.2" "$run_dir/summary.txt"
rm -f "$summary"
{
    echo "verdict=$verdict"
    echo "exit_code=$code"
    echo "passed=${passed# }"
    echo "failed=${failed# }"
    echo "errored=${errored# }"
    echo "merged_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$run_dir/merged.status.tmp.$$" && mv -f "$run_dir/merged.status.tmp.$$" "$run_dir/merged.status"
cat "$run_dir/summary.txt"
exit "$code"
