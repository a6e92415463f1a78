"""The command line explains itself: help with defaults and examples, --version, config
files, dry runs, checks before any work starts, and documented exit codes."""

from __future__ import annotations

import argparse
import json

from corpus_utils import make_texts, write_corpus, write_shard

from e5ray import __version__
from e5ray.cli.app import EXIT_CODES, build_parser, main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def job_args(tmp_path, model_dir, *extra: str) -> list[str]:
    return [
        "embed",
        f"--input={tmp_path / 'in'}",
        f"--output={tmp_path / 'out'}",
        "--model=tiny",
        f"--model-path={model_dir}",
        "--executor=local",
        *extra,
    ]


def test_every_flag_has_help_and_help_shows_defaults_examples_and_exit_codes(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"e5ray {name} {action.option_strings or action.dest} has no help"
    code, out, _ = run_cli(capsys, "embed", "--help")
    assert code == 0
    assert "(default: 512)" in out and "(default: passage)" in out
    assert "examples:" in out and "e5ray embed --input" in out
    assert "130  interrupted" in out and "3    the output holds vectors of another embedding space" in out


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"e5ray {__version__}"


def test_config_file_keys_are_the_flags_and_flags_win(capsys, tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=2, rows=5)
    config = tmp_path / "e5ray.yaml"
    config.write_text(
        f"input: {tmp_path / 'in'}\noutput: {tmp_path / 'out'}\nmodel: tiny\n"
        f"model-path: {bert_model_dir}\nexecutor: local\nmax_length: 64\nquiet: true\n"
    )
    code, out, err = run_cli(capsys, "embed", "--config", str(config), "--max-length", "32", "--json")
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["space"]["max_length"] == 32  # the flag beat the file
    assert json.loads(out)["totals"]["embedded"] == 10

    toml = tmp_path / "e5ray.toml"
    toml.write_text(f'input = "{tmp_path / "in"}"\noutput = "{tmp_path / "out"}"\nmax-lenght = 64\n')
    code, _, err = run_cli(capsys, "embed", "--config", str(toml))
    assert code == 2 and "unknown key(s) max_lenght; valid:" in err and "max-length" in err


def test_input_and_output_are_required_from_flags_or_config(capsys):
    code, _, err = run_cli(capsys, "embed", "--input", "x")
    assert code == 2 and "--output" in err


def test_dry_run_prints_the_plan_without_loading_a_model_or_writing(capsys, tmp_path, bert_model_dir, monkeypatch):
    import onnxruntime

    def no_session(*args, **kwargs):
        raise AssertionError("a dry run must not load the model")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    write_corpus(tmp_path / "in", shards=3, rows=20)
    code, out, err = run_cli(capsys, *job_args(tmp_path, bert_model_dir, "--dry-run"))
    assert code == 0, err
    assert "dry run" in out and "3 shards to embed" in out and "new output, version 1" in out
    assert "tokens in ~60 rows" in out
    assert not (tmp_path / "out").exists()


def test_dry_run_of_a_refresh_says_what_is_carried_and_estimates_time(capsys, tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=3, rows=20)
    assert run_cli(capsys, *job_args(tmp_path, bert_model_dir, "--quiet"))[0] == 0
    write_shard(tmp_path / "in" / "part-0003.parquet", list(range(100, 120)), make_texts(20, 9))  # one added
    code, out, _ = run_cli(capsys, *job_args(tmp_path, bert_model_dir, "--dry-run"))
    assert code == 0
    assert "version 1 -> 2" in out and "1 shards to embed" in out and "3 carried unchanged" in out
    assert "tokens/s of the previous run" in out
    assert "part-0003.parquet" in out


def test_output_inside_input_and_input_inside_output_are_refused_up_front(capsys, tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=1, rows=3)
    base = ["embed", "--model=tiny", f"--model-path={bert_model_dir}", "--executor=local"]
    code, _, err = run_cli(capsys, *base, f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'in' / 'emb'}")
    assert code == 2 and "is inside --input" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *base, f"--input={tmp_path / 'in'}", f"--output={tmp_path}")
    assert code == 2 and "--input" in err and "is inside --output" in err
    assert not (tmp_path / "in" / "emb").exists()


def test_a_wrong_column_is_a_usage_error_before_any_model_loads(capsys, tmp_path, bert_model_dir, monkeypatch):
    import e5ray.model.embedder

    monkeypatch.setattr(e5ray.model.embedder, "E5Embedder", None)  # any use would fail loudly
    write_corpus(tmp_path / "in", shards=2, rows=3)
    code, _, err = run_cli(capsys, *job_args(tmp_path, bert_model_dir, "--text-column=body"))
    assert code == 2
    assert "--text-column 'body' not in part-0000.parquet; its columns: id, text" in err


def test_an_unwritable_output_is_found_before_any_work(capsys, tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=1, rows=3)
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(
        capsys,
        "embed",
        f"--input={tmp_path / 'in'}",
        f"--output={tmp_path / 'afile' / 'out'}",
        "--model=tiny",
        f"--model-path={bert_model_dir}",
        "--executor=local",
    )
    assert code == 2 and "is not writable" in err


def test_exit_codes_space_mismatch_is_3_and_data_errors_are_1(capsys, tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=2, rows=5)
    assert run_cli(capsys, *job_args(tmp_path, bert_model_dir, "--quiet"))[0] == 0
    code, _, err = run_cli(capsys, *job_args(tmp_path, bert_model_dir, "--max-length=16"))
    assert code == 3 and "refusing to mix embedding spaces" in err
    (tmp_path / "in" / "part-0009.parquet").write_bytes(b"not parquet")
    code, _, err = run_cli(capsys, *job_args(tmp_path, bert_model_dir))
    assert code == 1 and "part-0009.parquet" in err
    assert "1    data errors" in EXIT_CODES and "4    another run committed" in EXIT_CODES


def test_summary_is_human_by_default_and_json_on_request(capsys, tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=2, rows=5)
    code, out, err = run_cli(capsys, *job_args(tmp_path, bert_model_dir, "--progress=lines"))
    assert code == 0, err
    assert "e5ray: done in" in out and "10 embedded, 0 rejected" in out and "manifest version 1" in out
    assert not out.lstrip().startswith("{")
    progress = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert progress["state"] == "done" and progress["shards"]["done"] == 2 and progress["rows"] == 10
