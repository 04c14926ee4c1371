"""The ground floor: errors, file guards and the one atomic writer (`files`), parameter constraints
(`params`), distributed helpers, metrics, messages (`logs`), the physics of scattering shared by the
demo and EMSC (`scattering`), and the version. Imports nothing else of the package."""

from .errors import DataError, TrainingError, TrainingWarning
from .version import __version__

__all__ = ["DataError", "TrainingError", "TrainingWarning", "__version__"]
