"""The pipeline ladder: every rung yields the same samples, shaped and placed alike."""

from __future__ import annotations

import pytest
import torch

from vae.pipelines import LADDER, PIPELINES, as_float_tensor, make_pipeline

BATCH = 64


def _epoch(name: str, split, device: str = "cpu", seed: int = 0) -> list[torch.Tensor]:
    return list(make_pipeline(name, split, batch_size=BATCH, device=device, seed=seed))


@pytest.mark.parametrize("name", list(PIPELINES))
def test_batches_shape_dtype_device_range(name, train_split):
    pipeline = make_pipeline(name, train_split, batch_size=BATCH)
    batches = list(pipeline)
    assert len(batches) == len(pipeline) == -(-len(train_split) // BATCH)
    for batch in batches[:-1]:
        assert batch.shape == (BATCH, 784)
    assert batches[-1].shape == (len(train_split) - BATCH * (len(batches) - 1), 784)
    for batch in batches:
        assert batch.dtype == torch.float32 and batch.device.type == "cpu"
        assert batch.min() >= 0 and batch.max() <= 1


def _sorted_rows(batches: list[torch.Tensor]) -> torch.Tensor:
    rows = torch.cat(batches)
    keys = rows @ torch.linspace(1, 2, rows.size(1), dtype=torch.float64).float()
    return rows[keys.argsort()]


@pytest.mark.parametrize("name", LADDER)
def test_every_rung_covers_the_epoch_exactly_once(name, train_split):
    expected = _sorted_rows([as_float_tensor(train_split.images)])
    torch.testing.assert_close(_sorted_rows(_epoch(name, train_split)), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", LADDER)
def test_shuffled_new_order_each_epoch_and_seeded(name, train_split):
    pipeline = make_pipeline(name, train_split, batch_size=BATCH, seed=5)
    first, second = torch.cat(list(pipeline)), torch.cat(list(pipeline))
    in_file_order = as_float_tensor(train_split.images)
    assert not torch.equal(first, in_file_order), "not shuffled"
    assert not torch.equal(first, second), "same order in two epochs"
    again = torch.cat(_epoch(name, train_split, seed=5))
    assert torch.equal(first, again), "the same seed gave a different order"


def test_optimized_is_the_resident_rung(train_split):
    assert type(make_pipeline("optimized", train_split)) is PIPELINES["resident"]


def test_unknown_pipeline_lists_the_valid_names(train_split):
    with pytest.raises(ValueError, match=r"unknown pipeline 'fast'.*naive, tensor, batched"):
        make_pipeline("fast", train_split)


def test_naive_converts_each_sample_with_pil_and_to_tensor(train_split):
    pipeline = make_pipeline("naive", train_split)
    x, label = pipeline.dataset[3]
    assert x.shape == (1, 28, 28)  # ToTensor's (C, H, W)
    assert label == train_split.labels[3]
    assert isinstance(pipeline.dataset.images, type(train_split.images))  # still NumPy


def test_fetch_is_labelled_as_dataloader_time(train_split):
    from torch.profiler import ProfilerActivity, profile

    pipeline = make_pipeline("batched", train_split, batch_size=BATCH)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        list(pipeline)
    names = {e.name for e in prof.events()}
    assert "enumerate(DataLoader)#BatchedPipeline.__next__" in names


@pytest.mark.gpu
@pytest.mark.parametrize("name", LADDER)
def test_gpu_batches_match_the_cpu_ones(name, train_split):
    gpu = _sorted_rows([b.cpu() for b in _epoch(name, train_split, device="cuda")])
    torch.testing.assert_close(gpu, _sorted_rows([as_float_tensor(train_split.images)]))
    assert make_pipeline(name, train_split, device="cuda").device.type == "cuda"


@pytest.mark.parametrize("name", ["naive", "tensor", "batched", "resident"])
def test_rewind_repeats_the_first_epochs_order(name, train_split):
    pipeline = make_pipeline(name, train_split, seed=3)
    first = torch.cat(list(pipeline))
    second = torch.cat(list(pipeline))
    pipeline.rewind()
    again = torch.cat(list(pipeline))
    assert torch.equal(first, again) and not torch.equal(first, second)
