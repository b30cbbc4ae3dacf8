"""The batch buffer pool: an array comes back only once nothing refers to it."""

from __future__ import annotations

import numpy as np
import torch

from fer_lightning.data.buffers import BufferPool, pinned_block, pinned_depth


def address(array: np.ndarray | torch.Tensor) -> int:
    return array.data_ptr() if isinstance(array, torch.Tensor) else array.ctypes.data


def test_an_array_is_reused_once_its_batch_and_every_view_of_it_are_gone():
    pool = BufferPool(keep=2)
    batch = torch.from_numpy(pool.take((4, 2, 2, 3), np.uint8))
    first = address(batch)
    del batch
    again = torch.from_numpy(pool.take((4, 2, 2, 3), np.uint8))
    assert address(again) == first and again.shape == (4, 2, 2, 3)
    view = again.permute(0, 3, 1, 2)[1].numpy()  # a view of it, as a consumer might keep
    del again
    other = pool.take((4, 2, 2, 3), np.uint8)
    assert address(other) != first
    del view
    short = pool.take((3, 2, 2, 3), np.uint8)  # a last, smaller batch uses the front of one
    assert address(short) == first and short.shape == (3, 2, 2, 3)
    assert address(pool.take((4, 2, 2, 3), np.float32)) not in (first, address(other))
    beyond = pool.take((4, 2, 2, 3), np.uint8)  # all kept ones in use, and keep=2: new, not kept
    del other, short, beyond
    assert {address(pool.take((4, 2, 2, 3), np.uint8)) for _ in range(3)} == {first}


def test_an_array_in_an_autograd_graph_is_not_reused_before_backward():
    pool = BufferPool(keep=1)
    images = torch.from_numpy(pool.take((2, 3), np.float32)).fill_(1.0)
    weight = torch.ones(3, requires_grad=True)
    loss = (images * weight).sum()  # saves images for the gradient of weight
    first = address(images)
    del images
    assert address(pool.take((2, 3), np.float32)) != first
    loss.backward()
    del loss
    assert address(pool.take((2, 3), np.float32)) == first


def test_pinned_blocks_are_powers_of_two_and_bound_the_depth():
    batch = (64, 224, 224, 3)  # 9.2 MiB, pinned as 16 MiB
    assert pinned_block(64 * 224 * 224 * 3) == 16 * 2**20 == pinned_block(16 * 2**20)
    assert pinned_block(1) == 1 and pinned_block(2**20 + 1) == 2**21
    assert pinned_depth(batch, np.uint8, 15, 4, None) == 60  # unbounded: ~1 GiB with the 3 held
    assert pinned_depth(batch, np.uint8, 15, 4, 512) == 32 - 3  # the 3 held count too
    assert pinned_depth(batch, np.uint8, 2, 4, 512) == 8  # within the budget: unchanged
    assert pinned_depth(batch, np.uint8, 15, 4, 16) == 2  # never below 2
    assert pinned_depth(batch, np.float32, 15, 4, 512) == 8 - 3  # 37 MiB, pinned as 64 MiB
