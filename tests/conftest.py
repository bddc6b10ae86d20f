"""Tiny synthetic datasets in each supported format, made per test in tmp_path."""

from __future__ import annotations

import csv
import os

import numpy as np
import optax
import pytest
from PIL import Image

SHARED_DATA = os.environ.get("MULTIMODAL_DATA",
                             os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def require_shared_data(*parts: str) -> str:
    """A path under SHARED_DATA; when it is missing the test fails under CI=true, else skips."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        message = (f"no shared data at {os.path.abspath(path)} "
                   "(provide ../shared/data or set MULTIMODAL_DATA)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true, so the shared-data tests must run", pytrace=False)
        pytest.skip(message)
    return path


# Files that take a minute or more on 2 cores, longest first. pytest-xdist (--dist loadfile)
# hands whole files to its workers in collection order; a long file handed out last keeps one
# worker busy while the other idles, so these start first and the short ones fill the gaps.
LONG_FILES = ("test_encoders.py", "test_baselines.py", "test_cv.py", "test_ensemble.py",
              "test_train_throughput.py", "test_recipes.py", "test_shared_data.py",
              "test_training.py", "test_search.py", "test_gpu_install.py", "test_segmentation.py",
              "test_evaluation.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


@pytest.fixture(scope="session", autouse=True)
def prepared_store(tmp_path_factory):
    """One shared prepared-data store for the session (not ~/.cache); script subprocesses
    inherit it through the environment."""
    with pytest.MonkeyPatch.context() as mp:
        store = tmp_path_factory.mktemp("prepared_store")
        mp.setenv("MULTIMODAL_PREPARED", str(store))
        yield store


def tiny_batch_optimizer(steps: int, peak_lr: float = 2e-3):
    """For fitting a tiny batch: clipped Adam whose learning rate decays to zero.

    Plain Adam at a constant 3e-3 fits, then may jump out again (VGG-19 went 0.10 -> 2.58 at
    step 25 on one machine and not on another); clipping and the decay make the end stable.
    """
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adam(optax.cosine_decay_schedule(peak_lr, steps)))


def assert_fits_a_tiny_batch(losses, logits, labels, window: int = 5, below: float = 0.25):
    """A correct model and gradient memorise a handful of random inputs.

    The best of the last `window` training losses (not the last one: a trajectory is
    machine-dependent) must be far below the first one and below `below`; with labels spread
    over 3 classes a model that ignores its input (zero gradients, a constant output) cannot
    beat about log(3) = 1.1. The logits after training, checked here rather than through
    the training loss, must put every example in its class (a loss on the wrong targets fails).
    """
    losses = np.asarray(losses, np.float64)
    best = losses[-window:].min()
    shown = np.round(losses[::max(1, len(losses) // 8)], 3).tolist()
    assert np.isfinite(losses).all(), f"non-finite loss: {shown}"
    assert best < below and best < 0.5 * losses[0], \
        f"best of the last {window} losses {best:.3f} (first {losses[0]:.3f}): {shown}"
    predicted = np.asarray(logits).argmax(-1)
    np.testing.assert_array_equal(predicted, np.asarray(labels), "the fitted model's classes")


def write_image(path, seed=0, size=(16, 12), color=None):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    if color is not None:
        pixels[:] = color
    Image.fromarray(pixels).save(path)
    return path


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def ham_rows(n_lesions=70, seed=0):
    """Lesions with 1-3 images each, every class present, some missing metadata."""
    rng = np.random.default_rng(seed)
    rows, k = [], 0
    for lesion in range(n_lesions):
        label = CLASSES[lesion % len(CLASSES)] if lesion < 35 else rng.choice(["nv", "nv", "mel"])
        for _ in range(int(rng.integers(1, 4))):
            age = "" if k % 17 == 0 else f"{float(rng.integers(5, 90))}"
            sex = ["male", "female", "unknown"][k % 3]
            loc = ["back", "face", "trunk", "unknown"][k % 4]
            rows.append([f"HAM_{lesion:07d}", f"ISIC_{k:07d}", label, "histo", age, sex, loc])
            k += 1
    return rows


@pytest.fixture
def ham_dir(tmp_path):
    """A HAM10000-format folder: metadata CSV + `images/` of 16x12 JPEGs."""
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    rows = ham_rows()
    for i, row in enumerate(rows):
        write_image(root / "images" / f"{row[1]}.jpg", seed=i)
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER, rows)
    return root


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> str:
    """One smoke run of the bundled sample config, trained once for every module that only
    reads it (errors, serving, the web demo); tests that damage a run copy it first."""
    from scripts_helper import run_script

    work = tmp_path_factory.mktemp("smoke") / "run"
    run_script("train.py", "--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress",
               "--workdir", str(work))
    return str(work)
