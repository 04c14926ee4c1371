"""What people look at: figures (`plots`), the analyses behind them (`analysis`: reconstructions, the PCA
comparison, embeddings), and the JupyterLab widgets (`widgets.explore`, `widgets.browse_reconstructions`,
on the clickable canvases of `canvas` and the `explorer`)."""

from .widgets import browse_reconstructions, explore

__all__ = ["browse_reconstructions", "explore"]
