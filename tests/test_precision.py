"""Mixed precision and the device-minded training paths, exercised on CPU (and on CUDA when present)."""

import numpy as np
import pytest
import torch

from spectra_vae import DataError, SpectraVAE, load_dataset
from spectra_vae.model.batches import IN_MEMORY_BYTES, PixelBatches, in_memory_budget
from spectra_vae.model.networks import VAE, ModelConfig
from spectra_vae.preprocess.normalise import Normaliser

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_under_bf16_autocast_hidden_layers_are_bf16_and_the_output_layer_float32(device):
    model = VAE(ModelConfig(442, hidden_dims=(64, 32))).to(device)
    x = torch.randn(16, 442, device=device)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        mu, _ = model.encode(x)
        x_hat = model.decode(mu)
    assert mu.dtype == torch.bfloat16  # the autocast really ran
    assert x_hat.dtype == torch.float32
    # without autocast the same weights give float32 everywhere, close to the mixed result
    with torch.no_grad():
        ref = model.decode(model.encode(x)[0])
    assert ref.dtype == torch.float32
    assert torch.allclose(x_hat.detach(), ref, atol=0.05)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_training_reaches_about_the_float32_held_out_error(demo_dir, device, tmp_path):
    train = load_dataset(demo_dir, split="normal_train")
    val = load_dataset(demo_dir, split="normal_val")
    test = load_dataset(demo_dir, split="normal_test")
    errors = {}
    for precision in ("fp32", "bf16"):
        vae = SpectraVAE(hidden_dims=(64, 32), epochs=8, batch_size=128, patience=None, device=device,
                         precision=precision, verbose=False).fit(train, validation=val,
                                                                 checkpoint_dir=tmp_path / precision)
        assert np.isfinite(vae.history[["train_loss", "val_loss", "val_rmse"]].to_numpy()).all()
        errors[precision] = vae.reconstruction_error(test).mean()
        loaded = SpectraVAE.load(tmp_path / precision / "last.pt", device="cpu")
        assert loaded.precision == precision  # the checkpoint records how it was trained
    assert errors["bf16"] <= 1.25 * errors["fp32"], errors


def test_unknown_precision_is_named(demo_dir):
    with pytest.raises(DataError, match="precision"):
        SpectraVAE(precision="fp16").fit(load_dataset(demo_dir, split="normal_train"))


def test_in_memory_batches_are_filled_chunk_by_chunk_with_the_normalised_pixels(demo_dir):
    ds = load_dataset(demo_dir)
    norm = Normaliser("global_standard").fit(ds.iter_chunks())
    batches = PixelBatches(ds, norm, 100, torch.device("cpu"))
    assert batches.in_memory and in_memory_budget(torch.device("cpu")) == IN_MEMORY_BYTES
    ordered = torch.cat(list(batches.epoch(None))).numpy()
    np.testing.assert_array_equal(ordered, norm.transform(ds.to_array()))
    streamed = PixelBatches(ds, norm, 100, torch.device("cpu"), in_memory_bytes=0)
    assert not streamed.in_memory
    np.testing.assert_array_equal(torch.cat(list(streamed.epoch(None))).numpy(), ordered)


def test_training_steps_run_under_autocast_only_when_asked(demo_dir, monkeypatch):
    seen: list[bool] = []
    features = VAE.features

    def spy(self, x):
        if self.training:
            seen.append(torch.is_autocast_enabled(x.device.type))
        return features(self, x)

    monkeypatch.setattr(VAE, "features", spy)  # every forward pass reads the encoder through it
    train = load_dataset(demo_dir, split="normal_train")
    for precision, expected in (("fp32", False), ("bf16", True)):
        seen.clear()
        SpectraVAE(hidden_dims=(16,), epochs=1, batch_size=256, precision=precision, verbose=False).fit(train)
        assert seen and set(seen) == {expected}


def test_streamed_epoch_shuffles_across_scans_and_sees_every_pixel_once(demo_dir, monkeypatch):
    from spectra_vae.model import batches as batches_module

    monkeypatch.setattr(batches_module, "STREAM_BLOCK", 50)  # many small pools, batches straddle them
    monkeypatch.setattr(batches_module, "STREAM_BUFFER_BLOCKS", 3)
    ds = load_dataset(demo_dir)
    norm = Normaliser("global_standard").fit(ds.iter_chunks())
    batches = PixelBatches(ds, norm, 100, torch.device("cpu"), in_memory_bytes=0)
    epoch = list(batches.epoch(torch.Generator().manual_seed(3)))
    assert [len(b) for b in epoch[:-1]] == [100] * (len(epoch) - 1) and 0 < len(epoch[-1]) <= 100
    seen = torch.cat(epoch).numpy()
    expected = norm.transform(ds.to_array())
    key = lambda a: a[np.lexsort(a[:, :4].T)]  # noqa: E731  (rows sorted: compare as multisets)
    np.testing.assert_array_equal(key(seen), key(expected))
    assert not np.array_equal(seen, expected)  # shuffled
    again = torch.cat(list(batches.epoch(torch.Generator().manual_seed(3)))).numpy()
    np.testing.assert_array_equal(seen, again)  # the same seed, the same order (prefetching or not)
    scan_of = ds.scan_of()
    first_pool = next(batches.stream_pools(torch.Generator().manual_seed(3)))
    assert len(np.unique(scan_of[first_pool])) > 1  # a pool mixes blocks from several scans


def test_a_cut_short_streamed_epoch_draws_as_much_randomness_as_a_whole_one(demo_dir, monkeypatch):
    """So a distributed run that stops each epoch at the smallest shard's batches still resumes exactly."""
    from spectra_vae.model import batches as batches_module

    monkeypatch.setattr(batches_module, "STREAM_BLOCK", 50)
    ds = load_dataset(demo_dir)
    norm = Normaliser("global_standard").fit(ds.iter_chunks())
    whole, short = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    list(PixelBatches(ds, norm, 100, torch.device("cpu"), in_memory_bytes=0).epoch(whole))
    list(PixelBatches(ds, norm, 100, torch.device("cpu"), in_memory_bytes=0, max_batches=2).epoch(short))
    assert torch.equal(whole.get_state(), short.get_state())
