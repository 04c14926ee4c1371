"""The workflow: folders, splits, runs, the notebooks' parameters and the papermill pipeline, sweeps,
comparisons and exports. What the notebooks and the command line call.

`train`, `open_run` and `resume` work on run folders (`runs`); `run_pipeline` runs the numbered
notebooks (`notebooks`); `check_parameters` is the notebooks' first cell; `resolve_data_dir`,
`save_figure` and friends find and write things (`paths`); `plain_warnings` shows the package's warnings
as their message alone.
"""

from ..core.logs import plain_warnings
from .notebooks import NOTEBOOKS, PipelineError, axis_warning, run_pipeline, warn_if_no_axis
from .parameters import ALL_PARAMETERS, NOTEBOOK_PARAMETERS, check_parameter, check_parameters
from .paths import (
    DEMO,
    DEMO_DATA,
    ensure_demo_data,
    project_root,
    resolve_checkpoint,
    resolve_data_dir,
    resolve_scattered_dir,
    save_figure,
)
from .runs import Run, open_run, read_history, resolve_run_dir, resume, train, training_run_dir
from .splits import Splits, load_scattered_variant, make_splits, split_names

__all__ = ["ALL_PARAMETERS", "DEMO", "DEMO_DATA", "NOTEBOOKS", "NOTEBOOK_PARAMETERS", "PipelineError", "Run",
           "Splits", "axis_warning", "check_parameter", "check_parameters", "ensure_demo_data",
           "load_scattered_variant", "make_splits", "open_run", "plain_warnings", "project_root", "read_history",
           "resolve_checkpoint", "resolve_data_dir", "resolve_run_dir", "resolve_scattered_dir", "resume",
           "run_pipeline", "save_figure", "split_names", "train", "training_run_dir", "warn_if_no_axis"]
