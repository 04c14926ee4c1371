"""The ME-EMSC trial (`benchmarks/me_emsc.py`, issue 13): its vectorised iterations against a plain
per-spectrum implementation written from the method's description (Solheim et al. 2019), and that
it removes scattering of its own kind given a scatter-free reference. Its figures are in the README
(Scattering and EMSC); it is not a preprocessing step."""

import numpy as np

from benchmarks.me_emsc import (
    MEEMSC,
    MIN_SCALE,
    complex_index,
    extinction,
    sphere_extinction,
    sphere_extinctions,
    sphere_parameters,
)

WN = np.linspace(950, 1800, 150)


def bands(rng: np.random.Generator, n: int) -> np.ndarray:
    """Spectra of three Lorentzian-like bands (amide I and II, a phosphate band) of varying heights."""
    centres, widths = np.array([1655.0, 1545.0, 1080.0]), np.array([19.0, 17.0, 25.0])
    heights = np.array([1.0, 0.6, 0.3]) * rng.uniform(0.7, 1.3, (n, 3))
    return (heights[:, :, None] / (1 + ((WN - centres[:, None]) / widths[:, None]) ** 2)).sum(axis=1)


def sphere(spectrum: np.ndarray, radius: float, index: float) -> np.ndarray:
    return sphere_extinction(spectrum, WN, radius, index)


def one_spectrum(me: MEEMSC, x: np.ndarray) -> tuple[np.ndarray, int]:
    """ME-EMSC of one spectrum, a loop over iterations with an SVD of its Mie curves and lstsq."""
    x = x / me.scale

    def model(reference: np.ndarray) -> np.ndarray:
        real_imag = complex_index(np.maximum(reference, 0)[None], WN)
        curves = np.stack([extinction(*real_imag, np.array([a0]), np.array([g]), WN)[0, 0]
                           for a0 in me.alpha0 for g in me.gamma])
        unit = reference / np.linalg.norm(reference)
        curves = curves - np.outer(curves @ unit, unit)
        directions = np.linalg.svd(curves, full_matrices=False)[2][:me.ncomp]
        return np.column_stack([np.ones_like(WN), directions.T, reference])

    def correct(design: np.ndarray) -> tuple[np.ndarray, float, float]:
        coef = np.linalg.lstsq(design, x, rcond=None)[0]
        rmse = float(np.round(np.sqrt(np.mean((x - design @ coef) ** 2)), 4))
        return (x - design[:, :-1] @ coef[:-1]) / coef[-1], coef[-1], rmse

    corrected, a, rmse = correct(model(me.reference))
    history, iterations = [rmse], 1
    assert a > MIN_SCALE
    for it in range(2, me.max_iter + 1):
        b = np.linalg.lstsq(me.basic, corrected, rcond=None)[0]
        reference = np.maximum((corrected - me.basic[:, :3] @ b[:3]) / b[3], 0)
        corrected, a, rmse = correct(model(reference))
        assert a > MIN_SCALE
        iterations = it
        if rmse > history[-1] or (len(history) > 1 and rmse == history[-1] == history[-2]):
            break
        history.append(rmse)
    return corrected * me.scale, iterations


def test_vectorised_iterations_equal_a_per_spectrum_loop():
    rng = np.random.default_rng(0)
    clean = bands(rng, 6)
    scattered = np.stack([0.4 * c + 0.05 * sphere(c, r, n) for c, r, n in
                          zip(clean, rng.uniform(2, 7, 6), rng.uniform(1.1, 1.4, 6), strict=True)])
    me = MEEMSC(0.4 * clean.mean(axis=0), WN, block=4)  # blocks of 4: a partial block too
    corrected, iterations, _ = me.transform(scattered)
    for i, x in enumerate(scattered):
        expected, n = one_spectrum(me, x)
        assert iterations[i] == n
        np.testing.assert_allclose(corrected[i], expected, rtol=0, atol=1e-8 * np.abs(expected).max())
    assert iterations.max() > 2  # the per-pixel iterations ran


def test_with_a_scatter_free_reference_it_removes_scattering_of_its_own_kind():
    rng = np.random.default_rng(1)
    clean = bands(rng, 1)[0]
    n = 12
    m = np.exp(rng.normal(0, 0.1, n))
    q = np.stack([sphere(clean, r, k) for r, k in zip(rng.uniform(2, 7.1, n), rng.uniform(1.1, 1.4, n), strict=True)])
    scattered = m[:, None] * clean + rng.uniform(0.1, 0.3, (n, 1)) * q / q.mean(axis=1, keepdims=True)
    corrected, _, _ = MEEMSC(clean, WN).transform(scattered)

    def error(x: np.ndarray) -> float:  # after the best scale and offset per spectrum
        c, t = x - x.mean(axis=1, keepdims=True), clean - clean.mean()
        return float(np.median(np.sqrt(np.mean((c / ((c @ t) / (t @ t))[:, None] - t) ** 2, axis=1))))

    assert error(corrected) < error(scattered) / 10


def test_one_sphere_per_spectrum_at_once_equals_each_alone_and_the_grid():
    rng = np.random.default_rng(4)
    x, radius, index = bands(rng, 5), rng.uniform(2, 7.1, 5), rng.uniform(1.1, 1.4, 5)
    together = sphere_extinctions(x, WN, radius, index)
    assert together.shape == x.shape
    for row, r, n, q in zip(x, radius, index, together, strict=True):
        assert np.array_equal(q, sphere(row, r, n))
        alpha0, gamma = sphere_parameters(np.array([r]), np.array([n]))
        grid = extinction(*complex_index(row[None] / row.max(), WN), alpha0, gamma, WN)
        assert np.allclose(q, grid[0, 0], rtol=1e-12, atol=0)
