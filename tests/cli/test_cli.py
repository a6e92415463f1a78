"""The command line: one line and a documented exit code per user error; bugs keep their trace."""

from __future__ import annotations

import argparse

import pytest

from e5ray.cli.app import main, main_with_errors
from e5ray.errors import (
    EXIT_INTERRUPTED,
    ConcurrentCommitError,
    ConfigError,
    CorpusError,
    DeviceUnavailableError,
    E5RayError,
    ModelUnavailableError,
    QualityGateError,
    RayClusterLost,
    ShardFailures,
    SpaceMismatchError,
)


def raising(exc: BaseException):
    def command(args: argparse.Namespace) -> int:
        raise exc

    return command


@pytest.mark.parametrize(
    "error, code",
    [
        (CorpusError("no corpus shards under 'x'"), 1),
        (ShardFailures("1 of 3 shards could not be embedded"), 1),
        (ConfigError("compute.device (--device): 'tpu' is not valid; valid: cpu, gpu"), 2),
        (ModelUnavailableError("model_path 'x' is not a directory"), 2),
        (QualityGateError("int8 model agrees at 0.9"), 2),
        (DeviceUnavailableError("no CUDA"), 2),
        (SpaceMismatchError("refusing to mix embedding spaces"), 3),
        (ConcurrentCommitError("v000002.json was committed by another run"), 4),
        (RayClusterLost("the Ray cluster at 10.0.0.5:6379 (RAY_ADDRESS) lost the pool's actors"), 7),
    ],
)
def test_each_user_error_prints_one_line_and_exits_with_its_code(error, code, capsys):
    assert isinstance(error, E5RayError) and error.exit_code == code
    assert main_with_errors(raising(error), argparse.Namespace()) == code
    err = capsys.readouterr().err
    assert err == f"e5ray: error: {type(error).__name__}: {error}\n"


def test_a_bug_is_not_reported_as_a_user_error(capsys):
    with pytest.raises(ZeroDivisionError):
        main_with_errors(raising(ZeroDivisionError("division by zero")), argparse.Namespace())
    # a plain ValueError from deep inside is a bug too, not a bad flag
    with pytest.raises(ValueError):
        main_with_errors(raising(ValueError("shape mismatch")), argparse.Namespace())


def test_an_interrupted_run_exits_130(capsys):
    assert main_with_errors(raising(KeyboardInterrupt()), argparse.Namespace()) == EXIT_INTERRUPTED == 130


def test_a_missing_input_exits_1_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["embed", "--input", str(missing), "--output", str(tmp_path / "out"), "--executor", "local"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("e5ray: error: CorpusError:") and str(missing) in err[0]


def test_a_bad_value_exits_2_before_any_work(tmp_path, capsys):
    argv = ["embed", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--max-length", "1"]
    assert main(argv) == 2
    assert "model.max_length (--max-length) must be >= 2, got 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_verify_and_gc_on_an_output_without_a_manifest(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 1
    assert "no manifest.json" in capsys.readouterr().out
    assert main(["gc", str(tmp_path), "--keep", "0"]) == 2
    assert "keep must be >= 1" in capsys.readouterr().err
    assert main(["gc", str(tmp_path), "--dry-run"]) == 0
    assert "0 file(s) to delete" in capsys.readouterr().out
