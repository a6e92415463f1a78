"""The quality commands: `e5ray eval` (retrieval metrics of embedding variants), `compare`
(how far two outputs' vectors moved) and `search` (an output's nearest rows to a query).
Each is a parser (its flags and help) and a function that runs it and returns the exit code;
the work itself is in `e5ray.quality`.

The library is imported inside the functions (numpy, pyarrow and the embedder only when a
command runs or its parser is built), so `import e5ray.cli.app` stays cheap.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

EVAL_HELP = "retrieval metrics of embedding variants on labelled pairs, A/B"
COMPARE_HELP = "how far two outputs' vectors moved: cosine, neighbours"


def add_quality_commands(sub: Any) -> None:
    """Register `eval`, `compare` and `search`, in the order `e5ray --help` lists them."""
    add_eval_arguments(sub.add_parser("eval", help=EVAL_HELP))
    add_compare_arguments(sub.add_parser("compare", help=COMPARE_HELP))
    add_search_command(sub)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from e5ray.model.catalog import DEFAULT_MODEL

    parser.add_argument(
        "data", nargs="?", default=None, help="pairs file (.jsonl/.parquet) or BEIR dir (default: the shipped pairs)"
    )
    parser.add_argument("--split", default="test", help="BEIR qrels split (default test)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="KEY=VALUE[,KEY=VALUE] with keys pooling (mean|cls), prefix (on|off), precision (fp32|int8|fp16), "
        "max_length (int), long_text (truncate|chunk|average); repeat; the first is the baseline",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="E5 model name")
    parser.add_argument("--model-path", default=None, help="local or s3:// directory with the ONNX export")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where the model runs")
    parser.add_argument("--threads", type=int, default=None, help="ONNX threads (default: every CPU here)")
    parser.add_argument("--cache-dir", default=None, help="model cache (default: $E5RAY_CACHE or ~/.cache/e5ray)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--json-out", default=None, help="write the report as JSON here")
    parser.add_argument("--chart-out", default=None, help="write a PNG chart here (needs matplotlib: e5ray[eval])")
    parser.set_defaults(func=eval_from_args)


def eval_from_args(args: argparse.Namespace) -> int:
    from e5ray.quality.eval import format_table, parse_variant, run_eval
    from e5ray.quality.evaldata import load_eval_set

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    variants = [parse_variant(text) for text in args.variant] or [parse_variant("")]
    model_kwargs = {
        "model": args.model,
        "model_path": args.model_path,
        "device": args.device,
        "threads": args.threads,
        "cache_dir": args.cache_dir,
    }
    report = run_eval(
        load_eval_set(args.data, args.split), variants, model_kwargs, args.resamples, args.seed, args.confidence
    )
    print(format_table(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.chart_out:
        from e5ray.quality.eval_chart import write_chart

        write_chart(report, args.chart_out)
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help="output dir or s3:// prefix with a manifest (the current space)")
    parser.add_argument("new", help="output to compare with it (the candidate space)")
    parser.add_argument("--sample", type=int, default=1000, help="ids whose neighbourhoods are compared")
    parser.add_argument("--k", type=int, default=10, help="neighbours per sampled id (overlap@k)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample of ids")
    parser.add_argument("--worst", type=int, default=10, help="lowest-cosine ids to list")
    parser.add_argument("--batch-rows", type=int, default=8192, help="rows read per batch (bounds memory)")
    parser.add_argument("--memory-mb", type=float, default=1024.0, help="per-bucket budget of the per-id join")
    parser.add_argument("--json-out", default=None, help="write the report as JSON here")
    parser.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    parser.set_defaults(func=compare_from_args)


def compare_from_args(args: argparse.Namespace) -> int:
    from e5ray.quality.compare import compare_outputs, format_report
    from e5ray.store.filesystem import s3_options

    report = compare_outputs(
        args.old,
        args.new,
        sample=args.sample,
        k=args.k,
        seed=args.seed,
        worst=args.worst,
        batch_rows=args.batch_rows,
        memory_mb=args.memory_mb,
        storage_options=s3_options(args.s3_endpoint) or None,
    )
    print(format_report(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    return 0


def add_search_command(sub: Any) -> None:
    """Register `e5ray search` on the command line's subparsers."""
    from e5ray.model.embedder import DEVICES
    from e5ray.model.prefixes import PREFIXES
    from e5ray.quality.search import DEFAULT_BATCH_ROWS

    search = sub.add_parser("search", help="the k rows of an output nearest to a query text")
    search.add_argument("output", help="the e5ray output (directory or s3:// prefix)")
    search.add_argument("text", help="the query; embedded in the output's own space")
    search.add_argument("-k", type=int, default=10, help="hits to print (default 10)")
    search.add_argument("--input", default=None, help="the corpus, to print the hits' texts")
    search.add_argument(
        "--model-path", default=None, help="the model the output was made with (default: its manifest's model name)"
    )
    search.add_argument(
        "--prefix", choices=list(PREFIXES), default="query", help="E5 prefix of the text (default query)"
    )
    search.add_argument("--device", choices=DEVICES, default="cpu", help="where the query is embedded")
    search.add_argument("--threads", type=int, default=None, help="ONNX threads (default: every CPU here)")
    search.add_argument(
        "--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="vectors read per step (bounds memory)"
    )
    search.add_argument("--width", type=int, default=100, help="characters of each text to print")
    search.add_argument("--cache-dir", default=None, help="model cache (default: $E5RAY_CACHE or ~/.cache/e5ray)")
    search.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    search.set_defaults(func=run_search_command)


def run_search_command(args: Any) -> int:
    from e5ray.quality.search import format_result, search_output
    from e5ray.store.filesystem import s3_options

    result = search_output(
        args.output,
        args.text,
        args.k,
        model_path=args.model_path,
        input_uri=args.input,
        prefix=args.prefix,
        device=args.device,
        threads=args.threads,
        batch_rows=args.batch_rows,
        cache_dir=args.cache_dir,
        storage_options=s3_options(args.s3_endpoint) or None,
    )
    print(format_result(result, args.width))
    return 0
