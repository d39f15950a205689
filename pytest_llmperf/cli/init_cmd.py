"""``llmperf init``: scaffold pytest-llmperf in a repository (a first perf test, the pytest
configuration keys, the CI workflow using the Action, ignore rules, optionally a Kubernetes
overlay). The plan is ``scaffold/plan.py``'s, the writing ``scaffold/write.py``'s.

Never overwrites or edits a file: each that exists is named in one line, followed by what would
have been added. Exit 0 when a file was written (or, with --dry-run, would be), 1 when none
could be, 2 for bad flags (one line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from ..scaffold import plan as scaffold
from ..scaffold import write as writer


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "init", help="scaffold a first perf test, pytest configuration and CI workflow in a "
                     "repository (never overwrites a file)",
        description="Write a working pytest-llmperf setup into a repository: a first perf test, "
                    "the pytest configuration keys, the CI workflow (the pytest-llmperf Action "
                    "on GitHub, or GitLab CI), ignore rules for reports and local baselines, "
                    "optionally a Kubernetes overlay. A file that exists is never changed: "
                    "init says so and prints what it would have added.")
    p.add_argument("--engine", choices=scaffold.ENGINES, default="embedded",
                   help="embedded: llama.cpp in-process on the packaged Gemma 3 270M (default); "
                        "vllm: vLLM in-process; url: an OpenAI-compatible server at --url")
    p.add_argument("--url", help="with --engine url: the server's base URL")
    p.add_argument("--model", help="with --engine vllm: the model (default "
                                   f"{scaffold.DEFAULT_VLLM_MODEL}); with --engine url: the "
                                   "model name to send to the server")
    p.add_argument("--ci", choices=scaffold.CIS, default="github",
                   help="the CI to write for: github (.github/workflows/llmperf.yml, using "
                        "the Action), gitlab (.gitlab-ci.yml) or none (default github)")
    p.add_argument("--k8s", action="store_true",
                   help="also write a Kubernetes overlay (k8s/llmperf/kustomization.yaml)")
    p.add_argument("--dir", default=".", help="the repository to write into (default: .)")
    p.add_argument("--suite", default="tests/perf",
                   help="the folder of the perf tests, relative to --dir (default tests/perf)")
    p.add_argument("--branch", default="main",
                   help="the default branch, where CI saves baselines (default main)")
    p.add_argument("--dry-run", action="store_true", help="print what would be written")
    p.set_defaults(func=run)
    return p


def _indented(text: str) -> str:
    return "".join(f"    | {line}\n" for line in text.rstrip("\n").splitlines())


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    root = Path(args.dir)
    if not root.is_dir():
        print(f"llmperf: error: --dir {args.dir}: not a directory", file=err)
        return 2
    options = scaffold.InitOptions(engine=args.engine, url=args.url, model=args.model,
                                   ci=args.ci, k8s=args.k8s, suite=args.suite,
                                   branch=args.branch)
    try:
        the_plan = scaffold.plan(options, writer.config_candidates(root))
    except scaffold.InitError as exc:
        print(f"llmperf: error: {exc}", file=err)
        return 2
    new, there = scaffold.split(the_plan.files, lambda rel: writer.exists(root, rel))
    print(f"llmperf init: engine {options.engine}, CI {options.ci}"
          f"{', Kubernetes overlay' if options.k8s else ''}, in {root.resolve()}", file=out)
    written = 0
    if args.dry_run:
        for f in new:
            print(f"would write {f.path} ({f.what}):", file=out)
            out.write(_indented(f.content))
        written = len(new)
    else:
        for outcome in writer.write(root, new):
            if outcome.written:
                written += 1
                print(f"wrote {outcome.planned.path} ({outcome.planned.what})", file=out)
            elif outcome.reason == "exists":
                there.append(outcome.planned)
            else:
                print(f"could not write {outcome.planned.path}: {outcome.reason}", file=out)
    for f in there:
        print(f"exists, not changed: {f.path}; {f.what}, to add by hand:", file=out)
        out.write(_indented(f.content))
    if not written:
        print("llmperf init: nothing written (every file exists or could not be written)",
              file=out)
        return 1
    print("next:", file=out)
    if root.resolve() != Path.cwd().resolve():
        print(f"  cd {args.dir}", file=out)
    for line in the_plan.next_steps:
        print(f"  {line}", file=out)
    return 0
