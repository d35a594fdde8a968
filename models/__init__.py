"""The model zoo: data sets that ship inside packages, QCFS architectures, training recipes and
small trained checkpoints."""

from spikeport.models.data import DATASETS, Dataset, load_dataset
from spikeport.models.qcfs import QCFS
from spikeport.models.zoo import ARCHITECTURES, build_model, bundled_checkpoint, load_checkpoint

__all__ = [
    "ARCHITECTURES",
    "DATASETS",
    "QCFS",
    "Dataset",
    "build_model",
    "bundled_checkpoint",
    "load_checkpoint",
    "load_dataset",
]
