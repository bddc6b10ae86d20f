"""Every encoder family: output shape at full width, and loss going down (narrow variants)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import assert_fits_a_tiny_batch, tiny_batch_optimizer
from multimodal.models import ENCODERS, Classifier, create_encoder
from multimodal.models import layers
from multimodal.models.layers import Conv, DepthwiseConv, max_pool, same_padding

# name -> (small options for fast tests, input size)
FAMILIES = {
    "resnet18": ({"width": 0.125}, 32),
    "resnet50": ({"width": 0.125}, 32),
    "resnet50v2": ({"width": 0.125}, 32),
    "vgg16": ({"width": 0.125}, 32),
    "vgg19": ({"width": 0.125}, 32),
    "xception": ({"width": 0.0625, "middle_blocks": 1}, 48),
    "inception_v3": ({"width": 0.0625}, 75),
    "efficientnet_lite0": ({"width": 0.25, "depth": 0.5}, 32),
    "efficientnet_lite1": ({"width": 0.25, "depth": 0.5}, 32),
    "efficientnet_lite2": ({"width": 0.25, "depth": 0.5}, 32),
}
FULL_EMBED = {"resnet18": 512, "resnet50": 2048, "resnet50v2": 2048, "vgg16": 512, "vgg19": 512,
              "xception": 2048, "inception_v3": 2048, "efficientnet_lite0": 1280,
              "efficientnet_lite1": 1280, "efficientnet_lite2": 1280}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_full_size_output_shape(name):
    size = FAMILIES[name][1]
    enc = create_encoder(name, rngs=nnx.Rngs(0))
    enc.eval()
    out = jax.eval_shape(lambda x: enc(x), jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32))
    assert out.shape == (2, FULL_EMBED[name]) and enc.embed_dim == FULL_EMBED[name]
    hash(nnx.graphdef(enc))  # the trainer's jit takes the graph definition as a static argument


def test_every_registered_encoder_is_tested():
    assert set(ENCODERS) - {"small_cnn", "small_cnn_bn"} == set(FAMILIES)


# one per family: Lite1/2 are Lite0's code with other multipliers
@pytest.mark.parametrize("name", sorted(set(FAMILIES) - {"efficientnet_lite1", "efficientnet_lite2"}))
def test_loss_goes_down_on_a_tiny_batch(name):
    options, size = FAMILIES[name]
    model = Classifier(3, "image", encoder=name, encoder_options={**options, "dropout": 0.0},
                       dropout=0.0,
                       rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(6, size, size, 3)), jnp.float32)
    labels = jnp.asarray([0, 1, 2, 0, 1, 2])
    steps = 30
    opt = nnx.Optimizer(model, tiny_batch_optimizer(steps), wrt=nnx.Param)
    zeros = jnp.zeros((6, 0))

    @nnx.jit
    def step(model, opt):
        def loss(model):
            logits = model(images, zeros, jnp.zeros(6))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        value, grads = nnx.value_and_grad(loss)(model)
        opt.update(model, grads)
        return value

    losses = [float(step(model, opt)) for _ in range(steps)]
    assert_fits_a_tiny_batch(losses, model(images, zeros, jnp.zeros(6)), labels)


@pytest.mark.parametrize("stride,kernel,size", [(1, 3, 9), (2, 3, 10), (2, 5, 11), (1, 5, 8)])
def test_shifted_depthwise_matches_grouped_convolution(stride, kernel, size):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size + 1, 6)), jnp.float32)
    shift = DepthwiseConv(6, kernel, stride, impl="shift", rngs=nnx.Rngs(0))
    grouped = DepthwiseConv(6, kernel, stride, impl="grouped", rngs=nnx.Rngs(0))
    # float error is ~1e-6 here (outputs up to ~5); a wrong tap or padding is off by ~0.1
    np.testing.assert_allclose(shift(x), grouped(x), atol=5e-5)
    # and both agree with nnx.Conv's TF-SAME grouped convolution
    conv = nnx.Conv(6, 6, (kernel, kernel), (stride, stride), feature_group_count=6,
                    use_bias=False, rngs=nnx.Rngs(1))
    shift.kernel[...] = conv.kernel[...]
    np.testing.assert_allclose(shift(x), conv(x), atol=5e-5)


@pytest.mark.parametrize("stride,kernel,size", [(1, 3, 9), (2, 3, 10), (2, 5, 11), (1, 5, 8)])
def test_depthwise_gradients_match_the_grouped_convolutions(stride, kernel, size):
    """The hand-written backward pass (shift) against autodiff of XLA's grouped convolution, on
    odd and even sizes, where TF-SAME padding is uneven and a stride drops the last row."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, 6)), jnp.float32)
    layers = {impl: DepthwiseConv(6, kernel, stride, impl=impl, rngs=nnx.Rngs(0))
              for impl in ("shift", "shift_autodiff", "grouped")}
    g = jnp.asarray(rng.normal(size=layers["grouped"](x).shape), jnp.float32)

    def grads(layer):  # (kernel gradient, input gradient); the kernels are equal (same seed)
        d_layer, dx = nnx.grad(lambda layer, x: (layer(x) * g).sum(), argnums=(0, 1))(layer, x)
        return jax.tree.leaves(d_layer)[0], dx

    want = grads(layers["grouped"])
    for impl in ("shift", "shift_autodiff"):
        got = grads(layers[impl])
        # float error ~1e-5 (sums of ~100 products); a wrong offset or flip is off by ~1
        np.testing.assert_allclose(got[0], want[0], atol=1e-3)
        np.testing.assert_allclose(got[1], want[1], atol=1e-3)


@pytest.mark.parametrize("stride,padding,size", [(1, "SAME", 6), (2, "SAME", 7), (2, 0, 8),
                                                 (1, ((0, 0), (0, 0)), 5)])
def test_pointwise_matmul_matches_xla_convolution(stride, padding, size):
    """1x1 convolutions run as a strided slice and a matmul (layers.conv_or_matmul): the same
    values and gradients as XLA's convolution, with stride and odd sizes."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, 5)), jnp.float32)
    layer = Conv(5, 4, (1, 1), (stride, stride), padding=padding, use_bias=True,
                 rngs=nnx.Rngs(0))
    reference = nnx.Conv(5, 4, (1, 1), (stride, stride), padding=padding, use_bias=True,
                         rngs=nnx.Rngs(0))
    reference.kernel[...] = layer.kernel[...]
    reference.bias[...] = jnp.asarray(rng.normal(size=4), jnp.float32)
    layer.bias[...] = reference.bias[...]
    g = jnp.asarray(rng.normal(size=reference(x).shape), jnp.float32)

    def grads(layer):
        d_layer, dx = nnx.grad(lambda layer, x: (layer(x) * g).sum(), argnums=(0, 1))(layer, x)
        return d_layer.kernel[...], d_layer.bias[...], dx

    np.testing.assert_allclose(layer(x), reference(x), atol=1e-4)
    for got, want in zip(grads(layer), grads(reference)):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(np.asarray(grads(reference)[0])).max() > 0.1  # not a match of zeros


def test_batchnorm_folding_keeps_the_lite_forward():
    enc = create_encoder("efficientnet_lite0", width=0.25, depth=0.5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    for path, var in nnx.iter_graph(enc):  # statistics and affine terms far from the identity
        if isinstance(var, nnx.BatchNorm):
            n = var.mean.shape
            var.mean[...] = rng.normal(size=n)
            var.var[...] = rng.uniform(0.2, 3, size=n)
            var.scale[...] = rng.uniform(0.5, 2, size=n)
            var.bias[...] = rng.normal(size=n)
    enc.eval()
    folded = enc.folded()
    x = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
    assert not any(isinstance(v, nnx.BatchNorm) for _, v in nnx.iter_graph(folded))
    np.testing.assert_allclose(folded(x), enc(x), rtol=1e-4, atol=1e-4)
    assert np.abs(np.asarray(enc(x))).max() > 0.1  # not a vacuous match of zeros


def test_inception_rejects_small_inputs():
    enc = create_encoder("inception_v3", width=0.0625, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="75 px"):
        enc(jnp.zeros((1, 64, 64, 3)))


@pytest.mark.parametrize("k,s,pads,size", [(3, 2, ((1, 1), (1, 1)), 8), (3, 2, "SAME", 7),
                                           (2, 2, "VALID", 7), (3, 2, "VALID", 9)])
def test_max_pool_matches_reduce_window(k, s, pads, size):
    """layers.max_pool (reduce-window forward, its own backward): nnx.max_pool's values and
    gradients, also where a window holds its maximum twice."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, 3)), jnp.float32)
    if pads == "SAME":
        explicit = tuple(same_padding(n, k, s) for n in x.shape[1:3])
    else:
        explicit = ((0, 0), (0, 0)) if pads == "VALID" else pads
    ours = lambda x: max_pool(x, k, s, explicit)  # noqa: E731
    theirs = lambda x: nnx.max_pool(x, (k, k), (s, s), padding=pads)  # noqa: E731
    g = jnp.asarray(rng.normal(size=theirs(x).shape), jnp.float32)
    np.testing.assert_array_equal(ours(x), theirs(x))
    grad = lambda f, x: jax.grad(lambda x: (f(x) * g).sum())(x)  # noqa: E731
    np.testing.assert_allclose(grad(ours, x), grad(theirs, x), atol=1e-6)
    ties = jnp.round(x)  # many equal values per window: the first one takes the gradient
    np.testing.assert_array_equal(ours(ties), theirs(ties))
    np.testing.assert_allclose(grad(ours, ties), grad(theirs, ties), atol=1e-6)


@pytest.mark.parametrize("k,stride,padding,size", [(3, 1, ((1, 1), (1, 1)), 16),
                                                   (3, 2, "SAME", 33), (7, 2, 3, 32)])
def test_taps_kernel_gradient_matches_xla(k, stride, padding, size, monkeypatch):
    """k x k convolutions whose output holds >= TAPS_MIN_PIXELS per image take their kernel
    gradient as a matmul per image and tap (layers.conv_taps_backward): XLA's values and both
    gradients, with stride, SAME padding and odd sizes."""
    rng = np.random.default_rng(0)
    monkeypatch.setattr(layers, "TAPS_MIN_CHANNELS", 4)  # a test-sized layer takes the path
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, 5)), jnp.float32)
    layer = Conv(5, 4, (k, k), (stride, stride), padding=padding, use_bias=False,
                 rngs=nnx.Rngs(0))
    g = jnp.asarray(rng.normal(size=layer(x).shape), jnp.float32)
    calls, original = [], layers.conv_taps_backward
    monkeypatch.setattr(layers, "conv_taps_backward",
                        lambda *a: calls.append(1) or original(*a))

    def run():
        d_layer, dx = nnx.grad(lambda layer, x: (layer(x) * g).sum(), argnums=(0, 1))(layer, x)
        return layer(x), d_layer.kernel[...], dx

    taps = run()
    assert calls  # the taps path is the one taken
    monkeypatch.setattr(layers, "KERNEL_GRAD", "xla")
    for got, want in zip(taps, run()):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    assert float(jnp.abs(taps[1]).max()) > 0.1  # not a match of zeros
