"""The example's data: a 3D volume on disk in z-slab blocks, and its running sum along z.

Layout under ``root``::

    layout.json                        shape, block depth, tile size
    input/block_0003.npy               z-slab 3 of the volume (block_depth, height, width)
    output/block_0003/tile_0001_0002.npy   cumulative sum of one (y, x) tile of block 3

A tile of block k is ``cumsum(block k tile, axis=0) + last slice of block k-1's
tile``: block k needs block k-1's output, so blocks must run in order. The
assembled output must equal ``np.cumsum(volume, axis=0)`` exactly (integers).
Plain numpy: workers import this without Dagster.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LAYOUT_FILE = "layout.json"


@dataclass(frozen=True)
class Layout:
    """Geometry of the volume: ``blocks`` slabs of ``block_depth`` z-slices, cut into square tiles."""

    blocks: int
    block_depth: int
    height: int
    width: int
    tile: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """The whole volume's shape (z, y, x)."""
        return (self.blocks * self.block_depth, self.height, self.width)

    def block_keys(self) -> list[str]:
        """Partition keys, in z order."""
        return [block_key(i) for i in range(self.blocks)]

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """``(y0, y1, x0, x1)`` of every tile, row-major."""
        ys = range(0, self.height, self.tile)
        xs = range(0, self.width, self.tile)
        h, w, t = self.height, self.width, self.tile
        return [(y, min(y + t, h), x, min(x + t, w)) for y in ys for x in xs]


def block_key(index: int) -> str:
    """The partition key of block ``index`` (zero-padded so keys sort in z order)."""
    return f"{index:04d}"


def input_path(root: str | Path, block: int) -> Path:
    """File of input block ``block``."""
    return Path(root) / "input" / f"block_{block:04d}.npy"


def tile_path(root: str | Path, block: int, y0: int, x0: int) -> Path:
    """Output file of the tile starting at ``(y0, x0)`` of block ``block``."""
    return Path(root) / "output" / f"block_{block:04d}" / f"tile_{y0:05d}_{x0:05d}.npy"


def load_layout(root: str | Path) -> Layout:
    """Read ``layout.json``; a clear FileNotFoundError if the volume was never made."""
    path = Path(root) / LAYOUT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no example volume at {root}: materialize the volume asset (or tqo demo)")
    return Layout(**json.loads(path.read_text()))


def make_volume(root: str | Path, layout: Layout, seed: int = 0) -> np.ndarray:
    """Write a random integer volume as blocks under ``root`` (clearing old output); return it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    volume = rng.integers(0, 100, size=layout.shape, dtype=np.int64)
    (root / "input").mkdir(parents=True, exist_ok=True)
    for i in range(layout.blocks):
        np.save(input_path(root, i), volume[i * layout.block_depth : (i + 1) * layout.block_depth])
    for old in (root / "output").glob("block_*/tile_*.npy"):
        old.unlink()
    (root / LAYOUT_FILE).write_text(json.dumps(asdict(layout)))
    return volume


def load_volume(root: str | Path) -> np.ndarray:
    """The whole input volume."""
    layout = load_layout(root)
    return np.concatenate([np.load(input_path(root, i)) for i in range(layout.blocks)], axis=0)


def cumsum_tile(root: str | Path, block: int, y0: int, y1: int, x0: int, x1: int) -> None:
    """Compute one output tile of ``block`` from its input and block ``block - 1``'s output."""
    slab = np.load(input_path(root, block), mmap_mode="r")[:, y0:y1, x0:x1]
    out = np.cumsum(slab, axis=0, dtype=np.int64)
    if block > 0:
        previous = tile_path(root, block - 1, y0, x0)
        if not previous.exists():
            raise FileNotFoundError(f"block {block} tile ({y0}, {x0}) needs {previous}, not written yet")
        out += np.load(previous)[-1]
    _save_atomic(tile_path(root, block, y0, x0), out)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def assemble_output(root: str | Path) -> np.ndarray:
    """The whole output volume from its tiles (FileNotFoundError naming a missing tile)."""
    layout = load_layout(root)
    out = np.empty(layout.shape, dtype=np.int64)
    for block in range(layout.blocks):
        z0 = block * layout.block_depth
        for y0, y1, x0, x1 in layout.tiles():
            out[z0 : z0 + layout.block_depth, y0:y1, x0:x1] = np.load(tile_path(root, block, y0, x0))
    return out


def blocks_done(root: str | Path) -> Iterator[int]:
    """Indexes of blocks whose every output tile exists."""
    layout = load_layout(root)
    for block in range(layout.blocks):
        if all(tile_path(root, block, y0, x0).exists() for y0, _, x0, _ in layout.tiles()):
            yield block


def verify(root: str | Path) -> tuple[bool, str]:
    """Compare the output with ``np.cumsum(volume, axis=0)``; return (ok, a sentence)."""
    expected = np.cumsum(load_volume(root), axis=0)
    try:
        actual = assemble_output(root)
    except FileNotFoundError as e:
        return False, f"output incomplete: {e}"
    if np.array_equal(actual, expected):
        return True, f"output equals np.cumsum(volume, axis=0) for shape {expected.shape}"
    wrong = int(np.count_nonzero(actual != expected))
    first = tuple(int(i) for i in np.argwhere(actual != expected)[0])
    return False, f"output differs from np.cumsum(volume, axis=0) at {wrong} voxels (first at z,y,x={first})"
