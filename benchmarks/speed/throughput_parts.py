"""The pieces benchmarks/speed/train_throughput.py times: the trainer's step in JAX, the same model's
step in PyTorch, and the trainer's input pipeline (Grain over prepared ArrayRecord)."""

from __future__ import annotations

import os
import resource
import time

import numpy as np

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def jax_step(name, batch, size, dtype, num_devices=None, encoder_options=None):
    """The trainer's jitted step (loss, backward, AdamW) on one device-resident batch, data-parallel
    over the mesh; bf16 compute keeps fp32 parameters and optimizer state (master weights)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from multimodal.models import Classifier
    from multimodal.run import mesh as mesh_lib
    from multimodal.training.classifier import LossSpec
    from multimodal.training.trainer import Stepper

    compute = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    model = Classifier(7, "image", encoder=name,
                       encoder_options={"dropout": 0.0, **(encoder_options or {})}, dropout=0.0,
                       rngs=nnx.Rngs(0), dtype=compute)
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    mesh = mesh_lib.make_mesh(num_devices)
    state = jax.device_put(nnx.state((model, optimizer)), mesh_lib.replicated(mesh))
    nnx.update((model, optimizer), state)
    stepper = Stepper(model, optimizer)
    spec, key, class_w = LossSpec("cross_entropy", 0.0, 2.0), jax.random.key(0), jnp.ones(7)
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model.encoder, nnx.Param)))

    def run(host_batch):
        loss, _ = stepper(spec, mesh_lib.shard_batch(host_batch, mesh), key, class_w)
        return loss

    rng = np.random.default_rng(0)
    synthetic = mesh_lib.shard_batch(
        {"image": rng.normal(size=(batch, size, size, 3)).astype(np.float32).astype(compute),
         "label": rng.integers(0, 7, batch).astype(np.int32),
         "metadata": np.zeros((batch, 0), np.float32),
         "metadata_mask": np.zeros(batch, np.float32)}, mesh)

    def synthetic_step():
        stepper(spec, synthetic, key, class_w)[0].block_until_ready()

    return synthetic_step, run, int(params)


def torch_step(name, batch, size, device):
    """The same architecture's step in PyTorch: fp32 eager on the CPU; on a GPU channels-last,
    bf16 autocast and torch.compile (its fastest common recipe)."""
    import torch

    from benchmarks.speed.torch_reference import EfficientNetLite0, ResNet50, parameter_count

    gpu = device == "gpu"
    dev = torch.device("cuda" if gpu else "cpu")
    if not gpu:
        torch.set_num_threads(os.cpu_count() or 1)
    model = {"resnet50": ResNet50, "efficientnet_lite0": EfficientNetLite0}[name]().to(dev)
    params = parameter_count(model) - parameter_count(model.head)
    memory = torch.channels_last if gpu else torch.contiguous_format
    model = model.to(memory_format=memory)
    opt = torch.optim.AdamW(model.parameters(), 1e-3, fused=gpu)
    forward = torch.compile(model) if gpu else model
    images = torch.randn(batch, 3, size, size, device=dev).to(memory_format=memory)
    labels = torch.randint(0, 7, (batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", torch.bfloat16, enabled=gpu):
            loss = torch.nn.functional.cross_entropy(forward(images), labels)
        loss.backward()
        opt.step()
        if gpu:
            torch.cuda.synchronize()

    return step, params


def write_images(folder: str, n: int, width: int = 600, height: int = 450) -> str:
    """A HAM10000-format folder of `n` smooth random JPEGs at the original camera size."""
    import csv

    from PIL import Image

    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        coarse = rng.integers(0, 255, (height // 25, width // 25, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        picture.save(os.path.join(folder, "images", f"ISIC_{i:07d}.jpg"), quality=90)
        rows.append([f"HAM_{i:07d}", f"ISIC_{i:07d}", CLASSES[i % 7], "histo", "50.0", "male",
                     "back"])
    with open(os.path.join(folder, "HAM10000_metadata.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        writer.writerows(rows)
    return folder


def input_pipeline(folder: str, workdir: str, size: int, batch: int, workers: int,
                   steps: int, dtype: str):
    """The trainer's training batches over `folder`: prepared once at `size` (ArrayRecord),
    then Grain decodes, flips/rotates and normalises on the host (`workers` processes)."""
    from multimodal.config import config_from_dict
    from multimodal.data.pipeline import loaders
    from multimodal.data.pipeline.inputs import build_inputs, example_loader

    cfg = config_from_dict({
        "name": "throughput", "modality": "image",
        "data": {"source": "ham10000", "options": {"root": folder}, "image_size": size,
                 "augment": ["flip_h", "flip_v", "rotate90"], "batch_size": batch,
                 "workers": workers, "val": 0.1, "test": 0.1},
        "model": {"encoder": "efficientnet_lite0", "dtype": dtype}})
    inputs = build_inputs(cfg, workdir)
    labels = inputs.labels("train")
    per_epoch = len(labels) // batch  # training_plan drops each epoch's remainder
    if per_epoch == 0:
        raise SystemExit(f"--images: {len(labels)} training images cannot fill a batch of {batch}")
    epochs = -(-steps // per_epoch)
    plan, _ = loaders.training_plan(labels, 7, epochs, batch, 0)
    return loaders.train_dataset(example_loader(cfg, inputs, "train", True), plan, batch,
                                 workers)


def host_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_peak_mb() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**20 if peak else None


def rate(fn, batch: int, steps: int, repeats: int) -> tuple[float, list[float]]:
    """Images/s: the median over `repeats` timings of `steps` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append(time.perf_counter() - t0)
    return batch * steps / float(np.median(times)), times


def sustained_rate(batches, batch: int, count: int, skip: int) -> float:
    """Images/s a prefetching iterator keeps up: `skip` batches are taken first, untimed, so
    what workers buffered while nobody read (during start-up or a slow model's compile) is
    gone, then `count` batches are timed. Timing a few calls right after start-up reads the
    buffer instead, which once reported 400,000 images/s for a pipeline doing 1,700."""
    for _ in range(skip):
        next(batches)
    t0 = time.perf_counter()
    for _ in range(count):
        next(batches)
    return batch * count / (time.perf_counter() - t0)

