"""The realism what-if (`benchmarks/realism.py`, issue 13): its settings reach the generator for
their run only, and its measure is `peak_position_spread`'s."""

import numpy as np

from benchmarks.realism import demo_constants, measure
from spectra_vae.io import demo
from spectra_vae.io.demo import component_spectra, demo_wavenumbers, make_demo_scan


def scan(scatter: bool) -> np.ndarray:
    return make_demo_scan(np.random.default_rng([7, 0]), 24, 24, scatter=scatter)[0]


def test_settings_reach_the_generator_for_their_run_only():
    own_d, own_bands, before = demo.SCATTER_DISPERSION, demo.COMPONENT_BANDS, scan(True)
    other = {"d": 2 * own_d, "pixel s.d.": demo.SCATTER_PIXEL_SD / 2}
    with demo_constants(other):
        assert (demo.SCATTER_DISPERSION, demo.SCATTER_PIXEL_SD) == (other["d"], other["pixel s.d."])
        stronger = scan(True)
        assert np.array_equal(scan(False), make_demo_scan(np.random.default_rng([7, 0]), 24, 24)[0])
    assert demo.SCATTER_DISPERSION == own_d and demo.COMPONENT_BANDS is own_bands
    assert np.array_equal(scan(True), before) and not np.array_equal(stronger, before)

    wn = demo_wavenumbers()
    with demo_constants({"amide I FWHM": 55.0}):
        wide = component_spectra(wn)
    narrow = component_spectra(wn)
    amide_i = (wn > 1600) & (wn < 1700)
    nucleic, lipid = demo.COMPONENTS.index("nucleic_acid"), demo.COMPONENTS.index("lipid")
    for k in (demo.COMPONENTS.index("protein"), demo.COMPONENTS.index("collagen")):
        assert wide[k, amide_i].sum() > 1.2 * narrow[k, amide_i].sum()  # wider band, same height
        assert np.allclose(wide[k, wn < 1450], narrow[k, wn < 1450], atol=0.02)  # the other bands as they were
    assert np.array_equal(wide[[nucleic, lipid]], narrow[[nucleic, lipid]])


def test_stronger_dispersion_moves_amide_i_further_and_leaves_the_clean_scans():
    own, strong = measure(3, 24, {}), measure(3, 24, {"d": 3 * demo.SCATTER_DISPERSION})
    assert own["clean s.d."] == strong["clean s.d."]
    assert strong["median shift"] < own["median shift"] < 0
    assert strong["ratio"] == strong["scattered s.d."] / strong["clean s.d."]
    assert np.isclose(strong["largest d"], 3 * own["largest d"], rtol=1e-6) and strong["d > 3 (%)"] >= own["d > 3 (%)"]
