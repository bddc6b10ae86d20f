"""The encoder registry (timm style): families register on import, each with its default
preprocessing and its pretrained-weight loader, which the pretrained lookup goes through."""

import inspect
import json
import os
import subprocess
import sys

import pytest
from flax import nnx

from multimodal.config import CHOICES
from multimodal.errors import ConfigError
from multimodal.models import efficientnet_lite, registry
from multimodal.models.pretrained import check_pretrained_name, load_pretrained_encoder
from multimodal.models.registry import ENCODERS, FAMILIES, create_encoder, encoder_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED = {
    "small_cnn": ["small_cnn", "small_cnn_bn"],
    "resnet": ["resnet18", "resnet50", "resnet50v2"],
    "vgg": ["vgg16", "vgg19"],
    "xception": ["xception"],
    "inception": ["inception_v3"],
    "efficientnet_lite": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
}
WITH_WEIGHTS = {"efficientnet_lite", "xception"}


@pytest.mark.parametrize("statement", ["import multimodal.models as m",
                                       "import multimodal.models.registry as m"])
def test_importing_the_package_registers_every_family(statement):
    """In a fresh interpreter: no explicit registration call, and create_encoder works."""
    code = (f"{statement}; import json; from flax import nnx; "
            "from multimodal.models.registry import ENCODERS, FAMILIES, create_encoder; "
            "create_encoder('small_cnn', rngs=nnx.Rngs(0)); "
            "print(json.dumps({f: FAMILIES[f].encoders for f in FAMILIES}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == EXPECTED


def test_families_and_encoders_agree():
    assert {f: FAMILIES[f].encoders for f in FAMILIES} == EXPECTED
    assert sorted(ENCODERS) == sorted(n for names in EXPECTED.values() for n in names)
    for family in FAMILIES.values():
        assert all(ENCODERS[n].family is family for n in family.encoders)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_has_its_preprocessing_defaults(name):
    cfg = ENCODERS[name].default_cfg
    assert encoder_info(name).default_cfg is cfg
    assert isinstance(cfg.input_size, int) and cfg.input_size >= 32
    assert cfg.normalize in CHOICES["data.normalize"]  # a setting the config accepts
    if cfg.normalize == "dataset":  # fitted on the training images
        assert cfg.mean is None and cfg.std is None
    else:  # fixed by the pretrained weights
        assert len(cfg.mean) == len(cfg.std) == 3 and min(cfg.std) > 0
    assert cfg.min_input_size is None or cfg.min_input_size <= cfg.input_size


def test_published_defaults():
    assert [ENCODERS[f"efficientnet_lite{i}"].default_cfg.input_size for i in range(3)] == \
        [224, 240, 260]
    lite = ENCODERS["efficientnet_lite0"].default_cfg
    assert (lite.normalize, lite.mean, lite.std) == ("minus1_1", (127.0,) * 3, (128.0,) * 3)
    assert ENCODERS["xception"].default_cfg.input_size == 299
    assert ENCODERS["inception_v3"].default_cfg.min_input_size == 75


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_constructor_is_keyword_only_with_dtype_and_rngs(name):
    params = inspect.signature(ENCODERS[name].factory).parameters.values()
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params), name
    assert {"dtype", "rngs"} <= {p.name for p in params}


def test_a_factory_with_another_constructor_is_refused():
    family = FAMILIES["small_cnn"]
    with pytest.raises(TypeError, match=r"\(\*, dtype, rngs, \*\*options\)"):
        family.register(lambda widths, *, dtype, rngs: None, name="bad_cnn")
    with pytest.raises(ValueError, match="registered twice"):
        family.register(lambda *, dtype, rngs: None, name="small_cnn")
    assert "bad_cnn" not in ENCODERS and family.encoders == EXPECTED["small_cnn"]


def test_each_family_with_weights_names_its_loader():
    assert {f for f, fam in FAMILIES.items() if fam.weights is not None} == WITH_WEIGHTS
    for name in WITH_WEIGHTS:
        weights = FAMILIES[name].weights
        assert weights.accepts and callable(weights.claims) and callable(weights.check)
        assert weights.load.__module__ == f"multimodal.models.{name}"  # owned by the family
    assert FAMILIES["efficientnet_lite"].weights.claims("efficientnet_lite2")
    assert FAMILIES["xception"].weights.claims("weights/xception.keras")


def test_unknown_encoder_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"unknown encoder 'resnet999'; known: \[.*'vgg16'"):
        encoder_info("resnet999")
    with pytest.raises(ConfigError, match="unknown encoder 'resnet999'"):
        check_pretrained_name("efficientnet_lite0", "resnet999")


def _refused(name, encoder, *needles):
    with pytest.raises(ConfigError) as info:
        check_pretrained_name(name, encoder)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_an_unknown_weight_name_is_refused_naming_every_family_choice():
    _refused("efficientnet_lite7", "efficientnet_lite0", "no weights named 'efficientnet_lite7'",
             "efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2", ".h5", ".keras",
             "none for the inception, resnet, small_cnn, vgg families")
    _refused("imagenet", "resnet50", "no weights named 'imagenet'", "efficientnet_lite: ",
             "xception: ")


def test_weights_of_another_family_are_refused_naming_what_fits(tmp_path):
    _refused("efficientnet_lite0", "resnet18",
             "efficientnet_lite0 holds weights for the efficientnet_lite0 | efficientnet_lite1 | "
             "efficientnet_lite2 encoders only, not model.encoder=resnet18",
             "the resnet family has no pretrained weights")
    keras = tmp_path / "xception.h5"
    keras.write_bytes(b"")
    _refused(str(keras), "efficientnet_lite0", "for the xception encoder only",
             "the efficientnet_lite family accepts efficientnet_lite0 | efficientnet_lite1")
    # within the family: the variant must match, the file must exist
    _refused("efficientnet_lite1", "efficientnet_lite0",
             "efficientnet_lite1 weights fit model.encoder=efficientnet_lite1, not "
             "efficientnet_lite0")
    _refused(str(tmp_path / "missing.keras"), "xception", "no Keras weight file")
    check_pretrained_name("efficientnet_lite2", "efficientnet_lite2")
    check_pretrained_name(str(keras), "xception")


def test_loading_weights_of_another_family_is_refused_before_reading(monkeypatch):
    def no_read(variant, source=None):
        raise AssertionError("weights were read for an encoder they do not fit")

    monkeypatch.setattr(efficientnet_lite, "lite_weights", no_read)
    encoder = create_encoder("resnet18", width=0.125, rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="not ResNet: the resnet family has no pretrained"):
        load_pretrained_encoder(encoder, "efficientnet_lite0")
    with pytest.raises(ConfigError, match="no pretrained weights named 'lite0'"):
        load_pretrained_encoder(encoder, "lite0")


def test_the_family_of_an_encoder_instance():
    lite = create_encoder("efficientnet_lite0", width=0.25, depth=0.5, rngs=nnx.Rngs(0))
    assert registry.family_of(lite) is FAMILIES["efficientnet_lite"]
    assert registry.family_of(lite.folded()) is FAMILIES["efficientnet_lite"]
    with pytest.raises(ValueError, match="not an encoder of a registered family"):
        registry.family_of(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
