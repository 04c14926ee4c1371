"""Preparing spectra for the model: the preprocessing pipeline, EMSC, the normaliser and the tissue rule.

`Preprocessor("cut(950,1800)|snv")` is a pipeline of the steps registered in `steps`, fitted to an
axis (and, for `emsc`, to training spectra) and stored with the model; `emsc` holds EMSC's numerics
and `diagnostics` what a fitted EMSC found per pixel. `Normaliser` scales channels for the
network, `TissueRule` tells tissue from background, and `variants` compares scatter-corrected and
uncorrected scans.
"""

from .diagnostics import MAP_LABELS, has_emsc, pixel_terms, term_maps
from .emsc import EMSC
from .normalise import Normaliser
from .pipeline import Preprocessor, Step, parse
from .tissue import TissueRule
from .variants import compare_variants, scan_pairs

__all__ = ["EMSC", "MAP_LABELS", "Normaliser", "Preprocessor", "Step", "TissueRule", "compare_variants", "has_emsc",
           "parse", "pixel_terms", "scan_pairs", "term_maps"]
