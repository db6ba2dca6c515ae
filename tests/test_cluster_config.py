"""cluster.yaml passes Ray's own cluster-launcher schema and has the intended node types."""

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_validates_with_ray():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert "gpu_worker" in nodes
    gpu = nodes["gpu_worker"]
    assert 0 < gpu["min_workers"] <= gpu["max_workers"]
    assert config["docker"]["image"].startswith("rayproject/ray:")
    assert any("deepgen" in c for c in config["setup_commands"])
