import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import assert_fits_a_tiny_batch, tiny_batch_optimizer
from multimodal.models import ENCODERS, Classifier, create_encoder
from multimodal.models.fusion import FUSIONS

META_DIM = 6


def _batch(n=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=(n, size, size, 3)), jnp.float32),
            jnp.asarray(rng.normal(size=(n, META_DIM)), jnp.float32),
            jnp.ones((n,), jnp.float32),
            jnp.asarray(np.arange(n) % 3, jnp.int32))


@pytest.mark.parametrize("name", ["small_cnn", "small_cnn_bn"])  # families: test_encoders
def test_encoder_shapes(name):
    enc = create_encoder(name, rngs=nnx.Rngs(0))
    enc.eval()
    out = enc(jnp.zeros((2, 32, 32, 3)))
    assert out.shape == (2, enc.embed_dim)


def test_encoder_registry_lists_the_small_cnns_and_rejects_unknown():
    assert {"small_cnn", "small_cnn_bn", "resnet50", "efficientnet_lite0"} <= set(ENCODERS)
    with pytest.raises(ValueError, match="unknown encoder 'resnet999'"):
        create_encoder("resnet999", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("modality,fusion", [("image", "concat"), ("meta", "concat")] +
                         [("image+meta", f) for f in FUSIONS])
def test_classifier_shapes(modality, fusion):
    model = Classifier(3, modality, meta_dim=META_DIM, fusion=fusion, rngs=nnx.Rngs(0),
                       encoder_options={"dense": 16, "widths": (8, 16)})
    image, meta, mask, _ = _batch()
    model.eval()
    assert model(image, meta, mask).shape == (8, 3)


def _fit(model, steps=40):
    image, meta, mask, labels = _batch()
    # 2e-3 leaves the metadata-only MLP near 0.23 after 40 steps; 1e-2 unsettles small_cnn
    opt = nnx.Optimizer(model, tiny_batch_optimizer(steps, peak_lr=5e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, key):
        def loss(model):
            logits = model(image, meta, mask, rngs=nnx.Rngs(dropout=key))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        value, grads = nnx.value_and_grad(loss)(model)
        opt.update(model, grads)
        return value

    losses = [float(step(model, opt, jax.random.key(i))) for i in range(steps)]
    return losses, model(image, meta, mask, rngs=nnx.Rngs(dropout=steps)), labels


@pytest.mark.parametrize("encoder,modality,fusion", [
    ("small_cnn", "meta", "concat"),
    *[(e, "image", "concat") for e in ("small_cnn", "small_cnn_bn")],
    *[(e, "image+meta", f) for e in ("small_cnn", "small_cnn_bn") for f in FUSIONS]])
def test_loss_goes_down_on_a_tiny_batch(encoder, modality, fusion):
    model = Classifier(3, modality, meta_dim=META_DIM, encoder=encoder, fusion=fusion,
                       dropout=0.0, rngs=nnx.Rngs(0), encoder_options={"dropout": 0.0})
    assert_fits_a_tiny_batch(*_fit(model))


def test_modality_dropout_hides_metadata_only_in_training():
    model = Classifier(3, "image+meta", meta_dim=META_DIM, modality_dropout=1.0, rngs=nnx.Rngs(0))
    image, meta, mask, _ = _batch()
    model.eval()
    with_meta = model(image, meta, mask)
    without = model(image, meta, jnp.zeros_like(mask))
    assert not np.allclose(with_meta, without)
    model.train()
    rngs = nnx.Rngs(dropout=0)
    hidden = model.modality_dropout(mask, rngs=rngs)
    assert float(hidden.sum()) == 0.0
    with pytest.raises(ValueError, match="needs rngs"):
        model.modality_dropout(mask)


def test_metadata_is_ignored_when_masked():
    model = Classifier(3, "image+meta", meta_dim=META_DIM, rngs=nnx.Rngs(0))
    model.eval()
    image, meta, _, _ = _batch()
    zero = jnp.zeros((8,))
    np.testing.assert_allclose(model(image, meta, zero), model(image, meta * 100, zero), atol=1e-5)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="modality"):
        Classifier(3, "text", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs metadata"):
        Classifier(3, "meta", meta_dim=0, rngs=nnx.Rngs(0))


def test_two_stage_fine_tuning_freezes_then_unfreezes_from_a_block():
    from multimodal.config import TrainConfig
    from multimodal.training.optim import make_optimizer

    model = Classifier(3, "image", encoder="resnet18", encoder_options={"width": 0.125},
                       dropout=0.0, rngs=nnx.Rngs(0))
    cfg = TrainConfig(freeze_encoder_epochs=1, unfreeze_from="blocks.6", learning_rate=1e-2,
                      warmup_epochs=0, schedule="constant", clip_norm=None)
    opt = nnx.Optimizer(model, make_optimizer(cfg, steps_per_epoch=2, total_steps=4,
                                              layer_order=model.encoder.layer_order), wrt=nnx.Param)
    image, meta, mask, labels = _batch()

    @nnx.jit
    def step(model, opt):
        def loss(model):
            logits = model(image, meta, mask)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        opt.update(model, nnx.grad(loss)(model))

    def snapshot():
        return {name: np.array(getattr(model.encoder.blocks[i].conv1.kernel, "value"))
                for i, name in ((0, "early"), (7, "late"))} | {"head": np.array(model.head.kernel.value)}

    before = snapshot()
    for _ in range(2):  # stage 1: heads only
        step(model, opt)
    stage1 = snapshot()
    assert np.array_equal(stage1["early"], before["early"])
    assert np.array_equal(stage1["late"], before["late"])
    assert not np.array_equal(stage1["head"], before["head"])
    for _ in range(2):  # stage 2: from blocks.6 on
        step(model, opt)
    stage2 = snapshot()
    assert np.array_equal(stage2["early"], before["early"])
    assert not np.array_equal(stage2["late"], stage1["late"])


def test_unfreeze_from_names_a_real_layer():
    from multimodal.models.blocks import parse_block

    with pytest.raises(ValueError, match="'layers' is not one of"):
        parse_block("layers.3", ("stem_conv", "blocks"))


def test_parameter_ema_lives_in_the_optimizer_and_swaps_in():
    from multimodal.run.checkpoint import use_weights
    from multimodal.training.optim import ema_weights, param_ema

    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.chain(optax.sgd(0.1), param_ema(0.5)), wrt=nnx.Param)
    history = [np.array(model.kernel[...])]

    @nnx.jit
    def step(model, opt):
        opt.update(model, nnx.grad(lambda m: (m(jnp.ones((1, 2))) ** 2).sum())(model))

    for _ in range(3):
        step(model, opt)
        history.append(np.array(model.kernel[...]))
    # The decay warms up as min(0.5, (1+n)/(10+n)): 0.1, 2/11, 0.25 over the three steps.
    expected = history[0]
    for n, w in enumerate(history[1:]):
        d = min(0.5, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * w
    ema = ema_weights(opt)
    np.testing.assert_allclose(ema["kernel"], expected, rtol=1e-6)
    with use_weights(model, ema):
        np.testing.assert_allclose(model.kernel[...], expected, rtol=1e-6)
    np.testing.assert_allclose(model.kernel[...], history[-1])
