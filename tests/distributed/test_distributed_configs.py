"""The shipped accelerate configs load with accelerate 1.15 and use only keys its launcher knows; DeepSpeed
configs are not shipped (FSDP2 is phaserl's sharded engine)."""

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp2", "FSDP")])
def test_accelerate_config_is_valid(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    config = ClusterConfig.from_yaml_file(str(CONFIGS / f"{name}.yaml"))  # raises on unknown top-level keys
    assert config.distributed_type.value == kind
    assert config.num_processes == 8 and config.num_machines == 1 and config.mixed_precision == "bf16"
    options = {action.dest for action in launch_command_parser()._actions}
    for section in (config.fsdp_config,):
        unknown = set(section) - options
        assert not unknown, f"{name}.yaml: keys accelerate launch does not know: {sorted(unknown)}"
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2


def test_a_wrong_key_is_caught(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "ddp.yaml").read_text() + "num_gpus: 8\n")
    with pytest.raises(ValueError, match="unknown keys"):
        ClusterConfig.from_yaml_file(str(bad))


def test_no_deepspeed_config_is_shipped():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == ["ddp", "fsdp2"]
