"""cluster.yaml: valid for the Ray cluster launcher, and the onnxruntime split is right.

Validation uses what ``ray up`` itself uses: the JSON schema shipped inside the
ray package (ray/autoscaler/ray-schema.json) and Ray's ``prepare_config`` +
``validate_config`` (defaults merge, head_node_type and min/max checks).
No cloud calls are made.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def raw_config() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


@pytest.fixture
def config(raw_config) -> dict:
    return copy.deepcopy(raw_config)


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    assert path.is_file(), path
    return json.loads(path.read_text())


def _ray_validate(cfg: dict) -> dict:
    """What `ray up` does before touching the cloud: prepare + validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def _effective_worker_setup(prepared: dict, node_type: str) -> list[str]:
    """Setup commands Ray runs on a worker of `node_type`.

    Mirrors StandardAutoscaler._get_node_type_specific_fields: a node type's own
    worker_setup_commands REPLACE the merged global (setup_commands +
    worker_setup_commands) list.
    """
    nt = prepared["available_node_types"][node_type]
    if "worker_setup_commands" in nt:
        return nt["worker_setup_commands"]
    return prepared["worker_setup_commands"]


def _node_type_by_resource(cfg: dict, want_gpu: bool) -> str:
    types = [
        name
        for name, nt in cfg["available_node_types"].items()
        if name != cfg["head_node_type"] and (nt.get("resources", {}).get("GPU", 0) > 0) == want_gpu
    ]
    assert len(types) == 1, types
    return types[0]


# --------------------------------------------------------------- validity


def test_matches_ray_json_schema(config, ray_schema):
    jsonschema.validate(config, ray_schema)


def test_ray_prepare_and_validate_accept_it(config):
    prepared = _ray_validate(config)
    assert prepared["cluster_name"] == "e5ray"
    assert prepared["provider"]["type"] == "aws"
    assert prepared["provider"]["region"] == "us-west-2"
    assert prepared["auth"]["ssh_user"] == "ubuntu"
    # Ray's defaults still supply the start commands we chose not to repeat
    assert any("ray start --head" in c for c in prepared["head_start_ray_commands"])
    assert any("ray start --address" in c for c in prepared["worker_start_ray_commands"])


def test_bogus_top_level_key_is_rejected(config, ray_schema):
    config["not_a_ray_option"] = True
    with pytest.raises(jsonschema.ValidationError, match="not_a_ray_option"):
        jsonschema.validate(config, ray_schema)
    with pytest.raises(jsonschema.ValidationError):
        _ray_validate(config)


def test_setup_commands_inside_a_node_type_are_rejected(config, ray_schema):
    """A plausible mistake: per-type `setup_commands` do not exist (only
    worker_setup_commands / initialization_commands / docker)."""
    gpu = _node_type_by_resource(config, want_gpu=True)
    config["available_node_types"][gpu]["setup_commands"] = ["echo hi"]
    with pytest.raises(jsonschema.ValidationError, match="setup_commands"):
        jsonschema.validate(config, ray_schema)


def test_min_workers_above_global_max_is_rejected(config):
    cpu = _node_type_by_resource(config, want_gpu=False)
    config["available_node_types"][cpu]["min_workers"] = config["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        _ray_validate(config)


# ------------------------------------------------------------ node types


def test_node_types_shape(config):
    nts = config["available_node_types"]
    head = nts[config["head_node_type"]]
    # no embedding work on the head
    assert head["resources"].get("CPU", None) == 0 or head["resources"] == {}
    cpu = nts[_node_type_by_resource(config, want_gpu=False)]
    gpu = nts[_node_type_by_resource(config, want_gpu=True)]
    assert cpu["min_workers"] == 0 and cpu["max_workers"] >= 1
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert gpu["resources"]["GPU"] == 1
    assert gpu["node_config"]["InstanceType"].split(".")[0] in {"g5", "g6", "g6e", "g4dn"}
    assert cpu["max_workers"] + gpu["max_workers"] <= config["max_workers"]


def test_gpu_type_replaces_cpu_onnxruntime_with_gpu_wheel(config):
    prepared = _ray_validate(config)
    gpu = _node_type_by_resource(prepared, want_gpu=True)
    assert "worker_setup_commands" in prepared["available_node_types"][gpu], (
        "the GPU type needs its own worker_setup_commands (they replace the global ones)"
    )
    cmds = _effective_worker_setup(prepared, gpu)
    script = "\n".join(cmds)

    # positions in the whole script, so `a && b` in one command counts too
    install = re.search(r"pip install [^\n]*e5ray[^\s\"']*\[gpu\]", script)
    uninstall = re.search(r"pip uninstall -y onnxruntime(?=\s|$|&|;)", script)
    assert install and uninstall, script
    # e5ray and fastembed depend on `onnxruntime`, so the CPU wheel must be
    # removed AFTER e5ray[gpu] is installed, or the install brings it back.
    assert install.start() < uninstall.start()
    after = script[uninstall.end() :]
    # uninstalling the CPU wheel deletes files shared with onnxruntime-gpu:
    # the GPU wheel is force-reinstalled afterwards, without pulling deps.
    reinstall = re.findall(r"pip install [^\n&;]*", after)
    assert any("--force-reinstall" in c and "onnxruntime-gpu" in c for c in reinstall), after
    for c in reinstall:
        # nothing after the uninstall may bring the CPU wheel back
        assert "--no-deps" in c or ("onnxruntime" not in c and "e5ray" not in c), c
        assert not re.search(r"(^|[\s\"'])onnxruntime($|[\s\"'=<>])", c), c
    # and the node fails setup if CUDA is not usable from onnxruntime
    assert "CUDAExecutionProvider" in script
    # ray is installed on the GPU type too (global setup_commands don't run there)
    assert re.search(r"ray\[[^\]]*\]==", script)


def test_cpu_nodes_never_install_onnxruntime_gpu(config):
    prepared = _ray_validate(config)
    cpu = _node_type_by_resource(prepared, want_gpu=False)
    cpu_cmds = _effective_worker_setup(prepared, cpu)
    head_cmds = prepared["head_setup_commands"]  # setup_commands + head_setup_commands
    for cmds in (cpu_cmds, head_cmds):
        script = "\n".join(cmds)
        assert "onnxruntime-gpu" not in script
        assert "[gpu]" not in script
        assert "pip uninstall" not in script
        assert re.search(r"pip install .*e5ray", script)


def test_gpu_extra_exists_in_pyproject():
    """The commands rely on e5ray's `gpu` extra pulling onnxruntime-gpu."""
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = meta["project"]["optional-dependencies"]
    assert any(d.replace(" ", "").startswith("onnxruntime-gpu") for d in extras["gpu"])
    base = meta["project"]["dependencies"]
    assert not any(d.startswith("onnxruntime-gpu") for d in base)


def test_install_source_is_mounted(config):
    """Install commands use $HOME/e5ray-src, which file_mounts must provide
    from the repository root (where `ray up` is run)."""
    mounts = config.get("file_mounts", {})
    all_cmds = "\n".join(
        config.get("setup_commands", [])
        + [c for nt in config["available_node_types"].values() for c in nt.get("worker_setup_commands", [])]
    )
    if "$HOME/e5ray-src" in all_cmds:
        assert mounts.get("~/e5ray-src") == "."
        assert (REPO / "pyproject.toml").is_file()
