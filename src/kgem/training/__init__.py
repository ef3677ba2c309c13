"""Training: approaches (batch builders), samplers, losses, regularizers, optimizers and the Trainer."""

from kgem.training.approaches import SLCWA, Approach, Generative, KvsAll, OneVsAll
from kgem.training.checkpoint import CheckpointError, Checkpoints
from kgem.training.loop import train_epoch
from kgem.training.losses import LOSSES, Loss
from kgem.training.optim import build_optimizer, clip_grad_norm
from kgem.training.regularizers import REGULARIZERS, Regularizer
from kgem.training.samplers import NegativeSampler
from kgem.training.schedule import SCHEDULERS, EpochSchedule, build_scheduler
from kgem.training.trainer import EarlyStopping, EpochCallback, History, Trainer, TrainingError, TrainingInterrupted

__all__ = [
           "LOSSES",
           "REGULARIZERS",
           "SCHEDULERS",
           "SLCWA",
           "Approach",
           "CheckpointError",
           "Checkpoints",
           "EarlyStopping",
           "EpochCallback",
           "EpochSchedule",
           "Generative",
           "History",
           "KvsAll",
           "Loss",
           "NegativeSampler",
           "OneVsAll",
           "Regularizer",
           "Trainer",
           "TrainingError",
           "TrainingInterrupted",
           "build_optimizer",
           "build_scheduler",
           "clip_grad_norm",
           "train_epoch",
]
