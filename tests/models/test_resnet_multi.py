"""The UDA works' ``ResNetMulti`` files (AdaptSegNet, ADVENT): parity of our network with an
independent reference of their code (tests/models/resnet_multi_reference.py) on every layout
they save, their initialisation files, the dialect choice and its errors."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch

from deeplabv2.errors import WeightsMismatchError
from deeplabv2.models import DeepLabV2, deeplab_v2_resnet101, load_model, save_weights
from deeplabv2.models._registry import list_mappings
from deeplabv2.protocol import UDA_PROTOCOL
from deeplabv2.weights import get_weights, registry

from . import resnet_multi_reference as ref

INPUT = (1, 3, 65, 81)
DIALECTS = ("adaptsegnet", "advent")


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.fixture(scope="module")
def multi_state() -> dict[str, torch.Tensor]:
    """A multi-level ResNetMulti (19 classes), random weights and BatchNorm, their names."""
    return ref.random_state({"layer5": 1024, "layer6": 2048}, classes=19, seed=3)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(*INPUT, generator=torch.Generator().manual_seed(5)) * 50


def save(state: dict, path: Path, prefix: str = "", batches: bool = True) -> Path:
    """``state`` as their ``torch.save(model.state_dict())``: with ``num_batches_tracked``
    (PyTorch >= 0.4.1) or without (2018 files), optionally prefixed (``module.``, ``Scale.``)."""
    out = {}
    for key, value in state.items():
        out[prefix + key] = value
        if batches and key.endswith("running_var"):
            out[prefix + key.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    torch.save(out, path)
    return path


@pytest.mark.parametrize("dialect", DIALECTS)
def test_multi_level_logits_equal_their_code(multi_state, image, tmp_path, dialect):
    path = save(multi_state, tmp_path / "GTA2Cityscapes_multi.pth")
    model = load_model(path, dialect=dialect)
    assert isinstance(model, DeepLabV2) and model.aux is not None
    with torch.no_grad():
        aux, main = ref.forward(multi_state, image, adaptsegnet=dialect == "adaptsegnet")
        ours = model(image)
        levels = model.forward_levels(image)
    assert relative(ours, main) <= 1e-5
    assert relative(levels.main, main) <= 1e-5
    assert relative(levels.aux, aux) <= 1e-5
    assert model.num_classes == 19


def test_the_two_dialects_compute_different_heads(multi_state, image, tmp_path):
    path = save(multi_state, tmp_path / "m.pth")
    with torch.no_grad():
        two = load_model(path, dialect="adaptsegnet")(image)
        four = load_model(path, dialect="advent")(image)
        (_, theirs_four) = ref.forward(multi_state, image, adaptsegnet=False)
    assert relative(two, theirs_four) > 1e-2  # the 18 and 24 branches matter
    assert relative(four, theirs_four) <= 1e-5


@pytest.mark.parametrize(
    ("dialect", "heads"),
    [("advent", {"layer6": 2048}), ("adaptsegnet", {"layer5": 2048})],
    ids=["advent-layer6", "adaptsegnet-layer5"],
)
def test_single_level_logits_equal_their_code(image, tmp_path, dialect, heads):
    state = ref.random_state(heads, classes=16, seed=4)
    path = save(state, tmp_path / "single.pth", batches=False)
    model = load_model(path, dialect=dialect)
    assert model.aux is None
    with torch.no_grad():
        (main,) = ref.forward(state, image, adaptsegnet=dialect == "adaptsegnet")
        assert relative(model(image), main) <= 1e-5
    with pytest.raises(ValueError, match="no auxiliary head"):
        model.forward_levels(image)


@pytest.mark.parametrize(("prefix", "batches"), [("module.", True), ("Scale.", False), ("", False)])
def test_every_saved_layout_loads_the_same_tensors(multi_state, tmp_path, prefix, batches):
    path = save(multi_state, tmp_path / "layout.pth", prefix=prefix, batches=batches)
    model = load_model(path, dialect="advent")
    ours = model.state_dict()
    assert ours["backbone.layer3.22.conv3.weight"].equal(multi_state["layer3.22.conv3.weight"])
    assert ours["backbone.layer4.0.downsample.1.running_var"].equal(
        multi_state["layer4.0.downsample.1.running_var"]
    )
    assert ours["aux.convs.3.bias"].equal(multi_state["layer5.conv2d_list.3.bias"])
    assert ours["aspp.convs.1.weight"].equal(multi_state["layer6.conv2d_list.1.weight"])
    assert len(ours) == len(multi_state)  # every tensor of theirs, no more


def test_without_a_dialect_a_note_names_the_choice_and_the_other(multi_state, tmp_path):
    path = save(multi_state, tmp_path / "unknown_origin.pth")
    with pytest.warns(UserWarning) as caught:
        model = load_model(path)
    (note,) = [str(w.message) for w in caught if "dialect" in str(w.message)]
    assert "read as dialect 'adaptsegnet'" in note and "dialect='advent'" in note
    assert "--dialect advent" in note and "\n" not in note
    assert model.model_args["head_branches"] == 2 and model.model_args["aux_head"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # naming the dialect: no note
        load_model(path, dialect="adaptsegnet")


def test_initialisation_file_loads_its_backbone_exactly(tmp_path):
    """AdaptSegNet's DeepLab_resnet_pretrained_init-f81d91e8.pth: ``Scale.`` before every key,
    a 21-class ``layer5`` on layer4; their training keeps the backbone, skips ``layer5`` for 19
    classes and initialises the heads N(0, 0.01) with PyTorch's default biases."""
    state = ref.random_state({"layer5": 2048}, classes=21, seed=6)
    path = save(state, tmp_path / "DeepLab_resnet_pretrained_init-f81d91e8.pth", "Scale.", False)
    with pytest.warns(UserWarning, match="head is initialised randomly"):
        model = deeplab_v2_resnet101(
            pretrained=str(path), num_classes=19, dialect="adaptsegnet", aux_head=True
        )
    ours = model.state_dict()
    backbone = [k for k in state if not k.startswith("layer5")]
    assert all(ours[f"backbone.{k}"].equal(state[k]) for k in backbone)
    assert sum(k.startswith("backbone.") for k in ours) == len(backbone)
    assert model.num_classes == 19 and model.model_args["head_branches"] == 2
    assert model.aux is not None and model.aux.convs[0].in_channels == 1024
    for head in (model.aspp, model.aux):
        for conv in head.convs:
            bound = 1 / (conv.in_channels * 9) ** 0.5
            assert (
                0 < float(conv.bias.detach().abs().max()) <= bound
            )  # PyTorch's default, not zeros
            assert 0.008 < float(conv.weight.detach().std()) < 0.012  # N(0, 0.01)


def test_convert_and_save_keep_the_variant(multi_state, image, tmp_path):
    from deeplabv2 import convert

    src = save(multi_state, tmp_path / "m.pth")
    dst, metadata = convert(src, tmp_path / "m.safetensors", dialect="adaptsegnet")
    assert '"head_branches": 2' in metadata["model_args"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the variant is in the header: no note
        converted = load_model(dst)
    again = save_weights(converted, tmp_path / "again.safetensors")
    reloaded = load_model(again)
    with torch.no_grad():
        (_, main) = ref.forward(multi_state, image, adaptsegnet=True)
        assert relative(reloaded(image), main) <= 1e-5
    assert reloaded.aux is not None and reloaded.model_args == converted.model_args


def test_unknown_dialect_lists_the_known_ones(multi_state, tmp_path):
    path = save(multi_state, tmp_path / "m.pth")
    with pytest.raises(ValueError, match="unknown dialect 'adaptseg'; known: adaptsegnet, adv"):
        load_model(path, dialect="adaptseg")


def test_a_dialect_that_does_not_fit_the_file_is_refused(multi_state, tmp_path):
    path = save(multi_state, tmp_path / "m.pth")
    with pytest.raises(WeightsMismatchError, match="reads as dialect 'adaptsegnet'"):
        load_model(path, dialect="port")
    ours = save_weights(
        DeepLabV2(num_classes=3, blocks=(1, 1, 1, 1)), tmp_path / "ours.safetensors"
    )
    with pytest.raises(WeightsMismatchError, match="in deeplabv2's keys.*leave dialect="):
        load_model(ours, model="deeplab_v2_resnet101", dialect="advent")


def test_a_dialect_of_another_family_is_refused(tmp_path):
    from deeplabv2.models import DeepLabVGG16

    vgg = save_weights(DeepLabVGG16(num_classes=3), tmp_path / "vgg.safetensors")
    with pytest.raises(WeightsMismatchError, match="reads deeplab_v2_resnet101 files.*vgg16"):
        load_model(vgg, dialect="adaptsegnet")


def test_a_dialect_without_weights_is_refused():
    with pytest.raises(ValueError, match="applies to weights"):
        deeplab_v2_resnet101(dialect="advent")


def test_the_cli_help_names_every_registered_dialect():
    from deeplabv2.cli.vocabulary import DIALECTS as NAMED

    registered = {d.name for m in list_mappings() for d in m.dialects}
    assert set(NAMED) == registered


@pytest.fixture
def uda_entries(monkeypatch, tmp_path, multi_state):
    """The registry's UDA entries, their URLs pointing at files made here (as their code saves
    them); the registry and torch.hub's cache are restored afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    files = {
        # names without the hash prefix that torch.hub's names carry (it is checked)
        "gta5-adaptsegnet": save(multi_state, tmp_path / "GTA2Cityscapes_multi.pth"),
        "adaptsegnet-init": save(
            ref.random_state({"layer5": 2048}, classes=21, seed=6),
            tmp_path / "DeepLab_resnet_pretrained_init.pth",
            "Scale.",
            False,
        ),
    }
    for tag, path in files.items():
        entry = get_weights(tag)
        registry._REGISTRY[entry.name] = dataclasses.replace(entry, url=path.as_uri())
    return files


def test_registry_entries_load_with_their_dialect_variant_and_protocol(
    uda_entries, multi_state, image
):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the entry names its dialect: no note
        model = deeplab_v2_resnet101(pretrained="gta5-adaptsegnet")
    info = model.pretrained_info
    assert info.name.endswith("gta5-adaptsegnet") and info.protocol == UDA_PROTOCOL
    assert model.model_args["head_branches"] == 2 and model.aux is not None
    assert model.class_names[0] == "road" and model.num_classes == 19
    with torch.no_grad():
        _, main = ref.forward(multi_state, image, adaptsegnet=True)
        assert relative(model(image), main) <= 1e-5
    init = deeplab_v2_resnet101(pretrained="adaptsegnet-init", num_classes=19)  # a backbone
    assert init.aux is not None and init.model_args["head_branches"] == 2  # their training net
    assert 0.008 < float(init.aux.convs[0].weight.detach().std()) < 0.012  # N(0, 0.01)


def test_a_resnet_multi_file_carries_the_uda_protocol(multi_state, tmp_path):
    path = save(multi_state, tmp_path / "GTA2Cityscapes_multi.pth")
    model = load_model(path, dialect="advent")
    assert model.pretrained_info.protocol == UDA_PROTOCOL
