"""Slice stores: a store built in parts by a pool of processes equals the SliceSet decoded in
memory; a store killed mid-write is never read and is rebuilt; reading batches from a store
keeps resident memory flat whatever its size; rows read by position are the rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainvq.data import load_slices
from brainvq.data.builder import SlicePart
from brainvq.data.cache import SliceCache
from brainvq.data.demo import build_demo
from brainvq.data.loader import resolve_source
from brainvq.data.sliceset import SliceSet
from brainvq.data.store import RowReader, StoreWriter, open_store

from .files import slice_pixels, write_png

COLUMNS = ("images", "split", "subject", "level", "filename")


def assert_same(got: SliceSet, expected: SliceSet) -> None:
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    for name in ("source", "notes", "splits_present", "n_levels"):
        assert getattr(got, name) == getattr(expected, name), name


def image_folder(root: Path, subjects: int = 12, slices: int = 5) -> Path:
    """PNG slices of `subjects` subjects (split by subject), an RGB one (a conversion note)
    and a file that is no image (a skipped note)."""
    for s in range(subjects):
        for k in range(slices):
            write_png(root / f"sub{s:02d}_slice_{k}.png", slice_pixels(str(s), k, 48))
    rgb = np.stack([slice_pixels("99", 0, 48)] * 3, axis=-1)
    Image.fromarray(rgb).save(root / "sub99_slice_0.png")
    (root / "readme.txt").write_text("not an image")
    return root


def test_a_store_built_in_parts_by_a_pool_equals_the_set_decoded_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("brainvq.data.folder.FILES_PER_TASK", 7)  # 9 parts, out of order done
    root = image_folder(tmp_path / "pngs")
    source = resolve_source(root)
    in_memory = source.load(32, show_progress=False, workers=0)
    stored = load_slices(root, 32, cache_dir=tmp_path / "cache", progress=False, workers=2)
    assert isinstance(stored.images, np.memmap)
    assert_same(stored, in_memory)
    assert any("converted" in n or "RGB" in n for n in stored.notes), stored.notes
    assert any("skipped" in n for n in stored.notes)
    # stored split by split: every split is one run of rows, and selecting it reads nothing
    splits = list(stored.split)
    assert splits == sorted(splits, key=("train", "validate", "test").index)
    train = stored.require_split("train")
    assert isinstance(train.images, np.memmap) and train.content_key is None
    np.testing.assert_array_equal(train.images, in_memory.require_split("train").images)
    again = load_slices(root, 32, cache_dir=tmp_path / "cache", progress=False)
    assert again.content_key == stored.content_key  # a hit, not a rebuild


def test_the_demo_store_equals_the_demo_built_in_memory(tmp_path: Path) -> None:
    stored = load_slices(
        "demo", 32, cache_dir=tmp_path, demo_subjects=(2, 1, 1), progress=False, workers=2
    )
    assert_same(stored, build_demo(32, 32, (2, 1, 1), 0, show_progress=False, workers=0))


def _slow_plan_script(cache: Path, key: str, parts: int, delay: float) -> str:
    return textwrap.dedent(
        f"""
        import time
        import numpy as np
        from brainvq.data.builder import SlicePart
        from brainvq.data.cache import SliceCache
        from brainvq.data.decode import DecodePlan

        def decode(i):
            time.sleep({delay})
            images = np.full((4, 16, 16), i, np.uint8)
            return SlicePart(images, ["train"] * 4, [f"s{{i}}"] * 4, [0, 1, 2, 3],
                             [f"s{{i}}_{{k}}" for k in range(4)])

        plan = DecodePlan(decode, list(range({parts})), "slow", "slow parts")
        SliceCache({str(cache)!r}).build("slow", {key!r}, plan, {{"size": 16}}, workers=0,
                                          show_progress=False)
        """
    )


def _parts(n: int) -> list[SlicePart]:
    return [
        SlicePart(
            np.full((4, 16, 16), i, np.uint8),
            ["train"] * 4,
            [f"s{i}"] * 4,
            [0, 1, 2, 3],
            [f"s{i}_{k}" for k in range(4)],
        )
        for i in range(n)
    ]


def test_a_store_killed_mid_write_is_never_read_and_is_rebuilt(tmp_path: Path) -> None:
    cache, key = tmp_path / "cache", "k" * 64
    script = _slow_plan_script(cache, key, parts=200, delay=0.05)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    tmp = []
    while time.monotonic() < deadline:  # wait until slices are being written
        tmp = [p for p in cache.glob(".*.tmp") if (p / "images.npy").stat().st_size > 128 * 2]
        if tmp:
            break
        time.sleep(0.05)
    assert tmp, "the writer never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = SliceCache(cache)
    assert store.get("slow", key) is None  # the half-written folder is never read
    assert not store.path("slow", key).exists()
    # the next build removes the dead writer's folder and writes a whole store
    result = subprocess.run([sys.executable, "-c", _slow_plan_script(cache, key, 30, 0.0)])
    assert result.returncode == 0
    built = store.get("slow", key)
    assert built is not None and len(built) == 120
    np.testing.assert_array_equal(built.images[::4, 0, 0], np.arange(30))
    assert not list(cache.glob(".*.tmp"))


def test_a_failed_build_leaves_no_store(tmp_path: Path) -> None:
    path = tmp_path / "x.store"
    with pytest.raises(RuntimeError, match="boom"), StoreWriter(path, 16) as writer:
        writer.add_part(_parts(1)[0])
        raise RuntimeError("boom")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_rows_read_by_position_are_the_rows(tmp_path: Path) -> None:
    with StoreWriter(tmp_path / "s.store", 16) as writer:
        for part in _parts(10):
            writer.add_part(part)
        writer.commit("parts", "key")
    stored = open_store(tmp_path / "s.store", "key")
    assert stored is not None and open_store(tmp_path / "s.store", "other key") is None
    reader = RowReader(stored.images)
    assert reader.file is not None  # read with preadv, not through the map
    rows = np.array([39, 0, 1, 2, 17, 17, 5])
    np.testing.assert_array_equal(reader.read(rows), np.asarray(stored.images)[rows])
    view = stored.images[8:20]  # a run of rows (as a split is) reads from its own offset
    np.testing.assert_array_equal(RowReader(view).read(np.array([0, 11])), view[[0, 11]])
    assert RowReader(np.asarray(stored.images)).file is None  # in memory: plain indexing
    assert (
        json.loads((tmp_path / "s.store" / "store.json").read_text(encoding="utf-8"))["n_images"]
        == 40
    )


WRITE_SCRIPT = """
import sys
import numpy as np
from brainvq.data.builder import SlicePart
from brainvq.data.store import StoreWriter

n, path = int(sys.argv[1]), sys.argv[2]
with StoreWriter(path, 64) as writer:
    for start in range(0, n, 1000):
        k = min(1000, n - start)
        images = np.random.default_rng(start).integers(0, 256, (k, 64, 64), dtype=np.uint8)
        writer.add_part(SlicePart(images, ["train"] * (k - 1) + ["validate"], ["s"] * k,
                                  [0] * k, [str(i) for i in range(k)]))
    writer.commit("rss", "key")
"""

# in a process of its own (the store written by another), so that what the writing left in
# the heap does not count
RSS_SCRIPT = """
import sys
import torch
from brainvq.data.dataset import SliceDataModule
from brainvq.data.store import open_store

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

torch.manual_seed(0)
model = torch.nn.Conv2d(1, 4, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
model(torch.zeros(64, 1, 64, 64)).sum().backward()  # torch's own first-use allocations
before = rss_mb()
sliceset = open_store(sys.argv[1], "key")
batches = iter(SliceDataModule(sliceset, batch_size=64).train_dataloader())
for _ in range(30):
    x, _ = next(batches)
    loss = model(x).square().mean()
    opt.zero_grad(); loss.backward(); opt.step()
print(rss_mb() - before)
"""


def test_training_steps_on_a_store_read_only_their_batches(tmp_path: Path) -> None:
    def python(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    def growth(n: int) -> float:
        store = str(tmp_path / f"{n}.store")
        python(WRITE_SCRIPT, str(n), store)
        return float(python(RSS_SCRIPT, store).strip().splitlines()[-1])

    small, large = growth(4_000), growth(60_000)  # 16 MB and 246 MB of slices
    # opening the store, its dataset and loader, and 30 steps that read 1,920 slices (8 MB):
    # the large store must cost no more than the small one
    assert large < 60 and large - small < 20, (small, large)
    print(f"resident memory growth: {small:.1f} MB (16 MB store), {large:.1f} MB (246 MB store)")


def test_dataloader_workers_read_the_same_batches_from_a_store(tmp_path: Path) -> None:
    from brainvq.data.dataset import SliceDataModule

    with StoreWriter(tmp_path / "s.store", 16) as writer:
        for part in _parts(12):
            writer.add_part(part)
        writer.commit("parts", "key")
    stored = open_store(tmp_path / "s.store", "key")

    def batches(workers: int) -> list[np.ndarray]:
        loader = SliceDataModule(stored, batch_size=5, num_workers=workers).train_dataloader()
        return [x.numpy() for x, _ in loader]

    here, there = batches(0), batches(2)  # each worker process opens the file itself
    assert len(here) == len(there) == 10
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a, b)
