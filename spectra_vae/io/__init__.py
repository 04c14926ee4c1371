"""Reading spectra: scans, datasets, folders and their split files, the readers of each format, the demo.

`load_dataset` opens any source (a folder of scans, one file, an array, a table) as a
`SpectralDataset`; `make_demo_dataset` writes the embedded demo data.
"""

from .convert import convert
from .dataset import SpectralDataset
from .demo import make_demo_dataset
from .finite import RECHECK_ENV, cache_dir
from .folders import SPLITS_FILE, WAVENUMBERS_FILE, available_splits
from .load import as_dataset, load_dataset
from .scan import Scan

__all__ = ["RECHECK_ENV", "SPLITS_FILE", "WAVENUMBERS_FILE", "Scan", "SpectralDataset", "as_dataset",
           "available_splits", "cache_dir", "convert", "load_dataset", "make_demo_dataset"]
