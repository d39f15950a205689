"""``llmperf export FORMAT RESULTS``: a results file in the format of another dashboard.

``bencher`` (Bencher Metric Format, for ``bencher run --adapter json --file OUT``),
``github-smaller`` / ``github-bigger`` (github-action-benchmark's ``customSmallerIsBetter`` /
``customBiggerIsBetter``), each written to ``--out`` (default: standard output); and
``pushgateway``: the figures pushed to a Prometheus Pushgateway at ``--url`` under ``--job``
(prometheus_client's ``push_to_gateway``). Exit 0, or 2 with one line for a bad file, an
unwritable output or a Pushgateway that does not take the push.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from ..files import atomic_write_text, dumps, os_reason
from ..redact import redact_url
from ..report.exports import FORMATS, bencher, github_benchmark, prometheus_registry
from ..report.view import ReportInputError, read_results


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export", help="write a results file as Bencher, github-action-benchmark or "
                       "Prometheus Pushgateway data",
        description="Write the figures of a results file (pytest --llmperf-json) in the "
                    "format of another dashboard: each test a benchmark, each figure its "
                    "median over the test's runs.")
    parser.add_argument("format", choices=FORMATS, help="the format")
    parser.add_argument("results", help="a results file from --llmperf-json (or llmperf "
                                        "report --merged)")
    parser.add_argument("--out", "-o", metavar="OUT",
                        help="write here (default: standard output); not for pushgateway")
    parser.add_argument("--url", help="pushgateway: the Pushgateway's address")
    parser.add_argument("--job", default="pytest-llmperf", help="pushgateway: the job label")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        doc, _ = read_results(args.results)
    except ReportInputError as exc:
        print(f"llmperf: error: {exc}", file=err)
        return 2
    if args.format == "pushgateway":
        return _push(doc, args, err)
    if args.url:
        print("llmperf: error: --url is for the pushgateway format", file=err)
        return 2
    data: Any = (bencher(doc) if args.format == "bencher"
                 else github_benchmark(doc, bigger=args.format == "github-bigger"))
    text = dumps(data)
    if not args.out:
        out.write(text)
        return 0
    try:
        atomic_write_text(Path(args.out), text)
    except OSError as exc:
        print(f"llmperf: error: --out {args.out}: cannot write: {os_reason(exc)}", file=err)
        return 2
    print(f"llmperf: wrote {args.format} data to {args.out}", file=err)
    return 0


def _push(doc: Any, args: argparse.Namespace, err: TextIO) -> int:
    if not args.url or args.out:
        print("llmperf: error: pushgateway needs --url (and takes no --out)", file=err)
        return 2
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(args.url, job=args.job, registry=prometheus_registry(doc), timeout=30)
    except Exception as exc:  # urllib's errors and the gateway's refusals alike: one line
        print(f"llmperf: error: pushgateway {redact_url(args.url)}: the push failed "
              f"({type(exc).__name__}: {exc})", file=err)
        return 2
    print(f"llmperf: pushed to {redact_url(args.url)} (job {args.job})", file=err)
    return 0
