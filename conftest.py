"""Test-wide settings for `pytest tests notebooks` (make test): tests never write into the user's reports/.

The notebooks' run folders default to `reports/demo` and `reports/runs` under the repository; nbval
runs the notebooks as stored, with no parameters, so their reports root is redirected here through
`$SPECTRA_VAE_REPORTS`, set before any kernel starts (kernels inherit it).
"""

import os
import tempfile

if not os.environ.get("SPECTRA_VAE_REPORTS"):
    os.environ["SPECTRA_VAE_REPORTS"] = tempfile.mkdtemp(prefix="spectra_vae_reports_")
