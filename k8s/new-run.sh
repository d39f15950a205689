#!/bin/sh
# A new run of the suite: writes the per-run kustomization (run id, commit, branch: the only
# values that change per run) and prints its directory, for `kubectl create -k DIR`.
#
#   k8s/new-run.sh OVERLAY COMMIT [BRANCH] [RUN_ID]
#
# OVERLAY: a directory name under k8s/overlays (cpu, gpu-vllm) or a path to your own overlay.
# RUN_ID (default: UTC time and the commit's first 8 digits) names both Jobs and the results
# directory /results/RUN_ID. The kustomization goes to $LLMPERF_RUNS_DIR/RUN_ID (default:
# k8s/runs/RUN_ID, which git ignores).
set -eu

usage() {
    echo "usage: $0 OVERLAY COMMIT [BRANCH] [RUN_ID]${1:+ ($1)}" >&2
    exit 2
}

if [ $# -lt 2 ] || [ $# -gt 4 ]; then usage "2 to 4 arguments"; fi
here=$(cd "$(dirname "$0")" && pwd)
case $1 in
    */*) overlay=$(cd "$1" 2>/dev/null && pwd) || usage "no directory $1" ;;
    *) overlay="$here/overlays/$1" ;;
esac
[ -f "$overlay/kustomization.yaml" ] || usage "no kustomization.yaml in $overlay"
commit=$2
case $commit in
    '' | *[!0-9a-fA-F]*) usage "COMMIT '$commit' is not a hexadecimal commit id" ;;
esac
branch=${3:-main}
case $branch in
    '' | *[!A-Za-z0-9._/-]*) usage "BRANCH '$branch' has characters a branch name does not" ;;
esac
short=$(printf %s "$commit" | cut -c1-8 | tr 'A-F' 'a-f')
run_id=${4:-$(date -u +%Y%m%d-%H%M%S)-$short}
case $run_id in
    '' | -* | *- | *--* | *[!a-z0-9-]*) usage "RUN_ID '$run_id' must be lowercase letters, digits and single '-'" ;;
esac
[ "${#run_id}" -le 40 ] || usage "RUN_ID '$run_id' is longer than 40 characters"

dir="${LLMPERF_RUNS_DIR:-$here/runs}/$run_id"
[ ! -e "$dir" ] || usage "$dir exists: a run id is used once"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
relpath() {  # kustomize takes relative paths only
    realpath --relative-to="$dir" "$1" 2>/dev/null ||
        python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$dir"
}
cat >"$dir/kustomization.yaml" <<YAML
# Run $run_id: written by k8s/new-run.sh. kubectl create -k $dir
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(relpath "$overlay")
components:
  - $(relpath "$here/components/run")
configMapGenerator:
  - name: llmperf-run
    behavior: merge
    literals:
      - LLMPERF_RUN_ID=$run_id
      - LLMPERF_COMMIT=$commit
      - LLMPERF_BRANCH=$branch
YAML
# The commit's time orders the store's baselines (no ancestry without .git): from git when
# this checkout has the commit.
if when=$(git -C "$here" log -1 --format=%cI "$commit" -- 2>/dev/null) && [ -n "$when" ]; then
    echo "      - LLMPERF_COMMITTED_AT=$when" >>"$dir/kustomization.yaml"
fi
echo "$dir"
