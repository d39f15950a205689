#!/bin/sh
# The merge of a run: the command of the merge Job's pod (k8s/base/job-merge.yaml), shipped by
# kustomize's configMapGenerator like run-shard.sh. tests/e2e/test_k8s.py runs this very file.
#
# Waits until every index 0..LLMPERF_SHARDS-1 of LLMPERF_RUN_ID has written its marker
# (LLMPERF_RESULTS_DIR/LLMPERF_RUN_ID/index-I.status), at most LLMPERF_MERGE_WAIT_S seconds,
# then merges the shards' results with `llmperf report` (the trend over the baselines pulled
# from LLMPERF_STORE) into report.html, report.md and results.json (the merged results), and
# writes summary.txt (one line per index) and merged.status. Only this run's directory is read: other runs' files are not.
# It stops waiting early when no missing marker can come: a marker says its index exited 2, 4
# or 5, which the podFailurePolicy makes a failed Job (Kubernetes stops the other pods, which
# then write none), or the run directory is not writable (a read-only or full volume: no index
# can write there either, and the merge cannot write its report: the verdict goes to the log).
# An index whose pod failed without writing its marker (its own mount read-only, killed
# outright) is seen only at the deadline: this pod has no access to the Kubernetes API.
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
why() {  # the reason in a shell's or a tool's error line: "sh: 1: cannot create X: Reason"
    case $1 in
        *': '*) echo "${1##*: }" ;;
        '') echo "no reason given" ;;
        *) echo "$1" ;;
    esac
}
reason=$(mkdir -p "$run_dir" 2>&1) || fail "cannot create $run_dir ($(why "$reason"))"
unwritable=""  # why the run directory cannot be written, if it cannot
probe="$run_dir/.write-test-merge.$$"
if reason=$( { : >"$probe"; } 2>&1 ); then
    rm -f "$probe"
else
    unwritable=$(why "$reason")
    echo "llmperf merge: error: the results directory $run_dir is not writable" \
        "($unwritable): no index can write its marker there, so none is waited for" >&2
fi

value() {  # value KEY FILE: KEY=... from a marker
    sed -n "s/^$1=//p" "$2" | head -n 1
}

missing_indexes() {
    i=0
    out=""
    while [ "$i" -lt "$shards" ]; do
        [ -f "$run_dir/index-$i.status" ] || out="$out $i"
        i=$((i + 1))
    done
    echo "$out"
}

job_failed() {  # the first index whose marker's exit the podFailurePolicy makes FailJob
    i=0
    while [ "$i" -lt "$shards" ]; do
        m="$run_dir/index-$i.status"
        if [ -f "$m" ] && [ "$(value run_id "$m")" = "$run_id" ]; then
            case $(value exit_code "$m") in 2 | 4 | 5) echo "$i"; return ;; esac
        fi
        i=$((i + 1))
    done
}

start=$(date +%s)
missing=$(missing_indexes)
while [ -n "$missing" ] && [ -z "$unwritable" ]; do
    stopper=$(job_failed)
    if [ -n "$stopper" ]; then
        exited=$(value exit_code "$run_dir/index-$stopper.status")
        echo "llmperf merge: index $stopper exited $exited, which fails the whole Job" \
            "(podFailurePolicy FailJob): index(es)$missing will write no marker; not waiting" \
            "for them" >&2
        break
    fi
    waited=$(( $(date +%s) - start ))
    if [ "$waited" -ge "$wait_s" ]; then
        echo "llmperf merge: waited ${waited}s: no marker from index(es)$missing" >&2
        break
    fi
    echo "llmperf merge: run $run_id: waiting for index(es)$missing (${waited}s)"
    sleep "$poll_s"
    missing=$(missing_indexes)
done

passed="" failed="" errored="" have=""  # have: the indexes with a results file
lines=""  # summary.txt after its first line: one line per index
nl='
'
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
    lines="${lines}index $i: $status (exit $code)$nl"
    i=$((i + 1))
done

set --
if [ -n "$unwritable" ]; then
    have=""  # no report: it could not be written
elif [ -n "${LLMPERF_STORE:-}" ]; then
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
elif [ -n "$unwritable" ]; then
    report=2
else
    echo "llmperf merge: no index wrote results" >&2
    report=2
fi

if [ -n "$unwritable" ]; then
    code=2 verdict="error: the results directory is not writable ($unwritable):"
    verdict="$verdict index(es)${errored:- none} errored or never ran; no report"
elif [ -n "$errored" ] || [ "$report" != 0 ]; then
    code=2 verdict="error: index(es)${errored:- none} errored or never ran; report exit $report"
elif [ -n "$failed" ]; then
    code=1 verdict="failed: index(es)$failed failed a test or gate"
else
    code=0 verdict="passed: every index passed"
fi
summary="run $run_id, commit ${LLMPERF_COMMIT:-?}, $shards shard(s): $verdict$nl$lines"
if [ -z "$unwritable" ]; then
    printf '%s' "$summary" >"$run_dir/summary.txt.tmp.$$" &&
        mv -f "$run_dir/summary.txt.tmp.$$" "$run_dir/summary.txt"
    {
        echo "verdict=$verdict"
        echo "exit_code=$code"
        echo "passed=${passed# }"
        echo "failed=${failed# }"
        echo "errored=${errored# }"
        echo "merged_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$run_dir/merged.status.tmp.$$" &&
        mv -f "$run_dir/merged.status.tmp.$$" "$run_dir/merged.status"
fi
printf '%s' "$summary"  # the pod's log has the verdict, whatever could be written
exit "$code"
