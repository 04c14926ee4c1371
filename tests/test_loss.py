import math

import torch

from spectra_vae.model.loss import elbo_loss, kl_divergence, reconstruction_nll
from spectra_vae.model.networks import VAE, ModelConfig


def test_kl_matches_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.3, -2.0]], dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = q.mean + q.stddev * torch.randn((400_000, 3), generator=g, dtype=torch.float64)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(1).mean()
    assert torch.isclose(kl_divergence(mu, logvar)[0], mc, rtol=5e-3)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    assert kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() == 0
    x = torch.randn(100, 4)
    assert (kl_divergence(x, torch.randn(100, 4)) > 0).all()


def test_reparameterisation_draws_from_mean_and_exp_half_logvar():
    mu = torch.full((200_000, 1), 1.5)
    logvar = torch.full((200_000, 1), math.log(0.25))  # σ = 0.5; the prototype's bug gives σ = log σ²
    z = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 1.5) < 0.01
    assert abs(z.std().item() - 0.5) < 0.01


def test_gaussian_reconstruction_is_the_normal_negative_log_likelihood():
    x, x_hat = torch.randn(5, 7), torch.randn(5, 7)
    log_var = torch.randn(7)
    expected = -torch.distributions.Normal(x_hat, torch.exp(0.5 * log_var)).log_prob(x).sum(1)
    assert torch.allclose(reconstruction_nll(x_hat, x, "gaussian", log_var), expected, atol=1e-5)


def test_mse_mae_and_bce_follow_their_formulas():
    x, x_hat = torch.rand(4, 6), torch.rand(4, 6) * 0.98 + 0.01
    assert torch.allclose(reconstruction_nll(x_hat, x, "mse"), ((x - x_hat) ** 2).sum(1))
    assert torch.allclose(reconstruction_nll(x_hat, x, "mae"), (x - x_hat).abs().sum(1))
    bce = -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum(1)
    assert torch.allclose(reconstruction_nll(x_hat, x, "bce"), bce, atol=1e-5)


def test_elbo_weights_kl_by_beta_and_reports_terms_apart():
    x, x_hat = torch.randn(8, 5), torch.randn(8, 5)
    mu, logvar = torch.randn(8, 2), torch.randn(8, 2)
    t1 = elbo_loss(x, x_hat, mu, logvar, kind="mse", beta=1.0)
    t3 = elbo_loss(x, x_hat, mu, logvar, kind="mse", beta=3.0)
    assert torch.isclose(t1.reconstruction, t3.reconstruction) and torch.isclose(t1.kl, t3.kl)
    assert torch.isclose(t3.total, t3.reconstruction + 3.0 * t3.kl)
    assert t1.kl > 0


def test_default_architecture_is_the_prototypes_shape():
    m = VAE(ModelConfig(n_channels=442))
    linears = [layer for layer in m.encoder if isinstance(layer, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(442, 221), (221, 110)]
    assert m.to_mu.out_features == 2 and m.decoder[-1].out_features == 442
    assert all(layer.negative_slope == 0.2 for layer in m.encoder if isinstance(layer, torch.nn.LeakyReLU))
    mu, logvar = m.encode(torch.randn(3, 442))
    assert mu.shape == logvar.shape == (3, 2)
    assert m.decode(mu).shape == (3, 442)
    s = VAE(ModelConfig(n_channels=10, output="sigmoid")).decode(torch.randn(50, 2) * 10)
    assert (s >= 0).all() and (s <= 1).all()


def test_noise_variance_tracks_mean_squared_residual():
    m = VAE(ModelConfig(n_channels=4, noise="channel"))
    x = torch.zeros(1000, 4)
    x_hat = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.1, 0.2, 0.5, 1.0])
    for _ in range(200):
        m.update_noise((x - x_hat).pow(2).mean(dim=0))
    assert torch.allclose(m.noise_log_var().exp().sqrt(), torch.tensor([0.1, 0.2, 0.5, 1.0]), rtol=0.1)


def test_encoder_log_variance_is_softly_bounded_and_untouched_well_inside():
    from spectra_vae.model.networks import LOGVAR_BOUNDS

    lo, hi = LOGVAR_BOUNDS
    m = VAE(ModelConfig(n_channels=8, hidden_dims=(4,)))
    x = torch.randn(5, 8)
    with torch.no_grad():
        m.to_logvar.weight.zero_()
        for raw in (-1e4, -40.0, 40.0, 1e4):
            m.to_logvar.bias.fill_(raw)
            lv = m.encode(x)[1]
            assert (lv >= lo - 1e-3).all() and (lv <= hi).all() and torch.isfinite(lv).all()
        m.to_logvar.bias.fill_((lo + hi) / 2)
        assert torch.allclose(m.encode(x)[1], torch.full((5, 2), (lo + hi) / 2), atol=0.01)
    unbounded = VAE(ModelConfig(n_channels=8, hidden_dims=(4,), logvar_bounds=None))
    with torch.no_grad():
        unbounded.to_logvar.weight.zero_()
        unbounded.to_logvar.bias.fill_(-40.0)
    assert (unbounded.encode(x)[1] == -40.0).all()  # a model saved before the bound keeps none
    assert ModelConfig.from_dict({**ModelConfig(8).to_dict(), "logvar_bounds": None}).logvar_bounds is None
    old = ModelConfig(8).to_dict()
    del old["logvar_bounds"]
    assert ModelConfig.from_dict(old).logvar_bounds is None
