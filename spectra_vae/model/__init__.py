"""The model: the network (`networks`), the ELBO (`loss`), batches of pixels (`batches`), the training loop
(`train`, with `plan_epochs` behind `epochs="auto"`) and the checkpoint format (`checkpoint`)."""

from .checkpoint import load_checkpoint, save_checkpoint
from .loss import elbo_loss, kl_divergence, reconstruction_nll
from .networks import VAE, ModelConfig
from .train import TrainConfig, TrainState, plan_epochs, train_loop

__all__ = ["VAE", "ModelConfig", "TrainConfig", "TrainState", "elbo_loss", "kl_divergence", "load_checkpoint",
           "plan_epochs", "reconstruction_nll", "save_checkpoint", "train_loop"]
