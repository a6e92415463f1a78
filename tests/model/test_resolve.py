"""Model resolution: local directories of both layouts, staged s3:// copies, the offline error."""

import shutil

import pytest

from e5ray import E5Embedder
from e5ray.model.catalog import CATALOG, get_spec
from e5ray.model.resolve import ModelUnavailableError, locate_files, model_sha256, resolve_model


def test_local_dir_with_files_at_the_root(bert_model_dir):
    files = resolve_model("tiny", bert_model_dir)
    assert files.onnx_path == bert_model_dir / "model.onnx"
    assert files.tokenizer_path.name == "tokenizer.json"


def test_local_dir_in_optimum_layout(bert_model_dir, tmp_path):
    """Exports such as Xenova's keep onnx/model.onnx below the tokenizer files."""
    root = tmp_path / "exported"
    (root / "onnx").mkdir(parents=True)
    for f in bert_model_dir.iterdir():
        shutil.copy(f, root / ("onnx" if f.name.startswith("model.onnx") else "") / f.name)
    files = resolve_model("intfloat/multilingual-e5-small", root)
    assert files.onnx_path == root / "onnx" / "model.onnx"
    assert files.config_path == root / "config.json"
    vec = E5Embedder("intfloat/multilingual-e5-small", model_path=root, threads=1).embed_passages(["hello world"])
    ref = E5Embedder("intfloat/multilingual-e5-small", model_path=bert_model_dir, threads=1).embed_passages(
        ["hello world"]
    )
    assert abs(vec - ref).max() < 1e-6


def test_missing_tokenizer_is_named(bert_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bert_model_dir, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ModelUnavailableError, match="tokenizer.json"):
        locate_files(broken)
    with pytest.raises(ModelUnavailableError, match="not a directory"):
        resolve_model("tiny", tmp_path / "nowhere")


def test_unknown_model_lists_the_catalogue():
    with pytest.raises(ValueError, match="intfloat/multilingual-e5-large"):
        get_spec("intfloat/e5-gigantic")
    assert {
        "intfloat/multilingual-e5-large",
        "intfloat/multilingual-e5-base",
        "intfloat/multilingual-e5-small",
        "intfloat/e5-large-v2",
        "intfloat/e5-base-v2",
        "intfloat/e5-small-v2",
    } <= set(CATALOG)
    assert get_spec("intfloat/multilingual-e5-large").dim == 1024


def test_offline_catalogue_model_says_how_to_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        resolve_model("intfloat/multilingual-e5-small", cache_dir=tmp_path)
    message = str(err.value)
    assert "Xenova/multilingual-e5-small" in message
    assert "--model-path" in message and "s3://" in message
    assert "Traceback" not in message


def test_s3_model_dir_is_staged_once_and_refreshed_when_it_changes(s3_server, s3_bucket, bert_model_dir, tmp_path):
    fs = s3_server.filesystem()
    uri = f"s3://{s3_bucket}/models/tiny"
    for f in bert_model_dir.iterdir():
        fs.put_file(str(f), f"{s3_bucket}/models/tiny/{f.name}")
    options = {
        "key": s3_server.key,
        "secret": s3_server.secret,
        "client_kwargs": {"endpoint_url": s3_server.endpoint_url},
    }
    first = resolve_model("tiny", uri, cache_dir=tmp_path, storage_options=options)
    assert model_sha256(first) == model_sha256(locate_files(bert_model_dir))
    stamp = first.onnx_path.stat().st_mtime_ns
    again = resolve_model("tiny", uri, cache_dir=tmp_path, storage_options=options)
    assert again.onnx_path == first.onnx_path and again.onnx_path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("staged/.*tmp*"))
    # A new model file under the same URI is noticed and staged again.
    fs.pipe_file(f"{s3_bucket}/models/tiny/config.json", (bert_model_dir / "config.json").read_bytes() + b"\n")
    third = resolve_model("tiny", uri, cache_dir=tmp_path, storage_options=options)
    assert (
        third.config_path.read_bytes().endswith(b"\n\n")
        or third.config_path.stat().st_size == (bert_model_dir / "config.json").stat().st_size + 1
    )
    vec = E5Embedder("tiny", model_path=uri, cache_dir=tmp_path, storage_options=options, threads=1)
    assert vec.embed_passages(["staged model works"]).shape == (1, vec.dim)


def test_concurrent_staging_downloads_once(s3_server, s3_bucket, bert_model_dir, tmp_path, monkeypatch):
    """Several actors of one node staging the same model: one copy, made once, under the lock."""
    import threading

    import e5ray.model.resolve as resolve

    fs = s3_server.filesystem()
    for f in bert_model_dir.iterdir():
        fs.put_file(str(f), f"{s3_bucket}/models/shared/{f.name}")
    options = {
        "key": s3_server.key,
        "secret": s3_server.secret,
        "client_kwargs": {"endpoint_url": s3_server.endpoint_url},
    }
    downloads = []
    real_filesystem_for = resolve.filesystem_for

    def counting_filesystem_for(uri, storage_options=None):
        remote, root = real_filesystem_for(uri, storage_options)
        if not getattr(remote, "_counting", False):  # fsspec shares one instance between threads
            real_get = remote.get_file

            def get_file(rpath, lpath, **kw):
                downloads.append(rpath)
                return real_get(rpath, lpath, **kw)

            remote.get_file, remote._counting = get_file, True
        return remote, root

    monkeypatch.setattr(resolve, "filesystem_for", counting_filesystem_for)
    results, errors = [], []

    def stage():
        try:
            results.append(resolve.stage_remote_dir(f"s3://{s3_bucket}/models/shared", tmp_path, options))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=stage) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(set(results)) == 1
    assert sorted(downloads) == sorted(f"{s3_bucket}/models/shared/{f.name}" for f in bert_model_dir.iterdir())
