"""Packaged real datasets and user data sources (the public path of
:mod:`taskrel.features.datasets` and :mod:`taskrel.features.image_folder`)."""

from __future__ import annotations

from .features.datasets import Dataset as Dataset
from .features.datasets import dataset_fingerprint as dataset_fingerprint
from .features.datasets import from_arrays as from_arrays
from .features.datasets import from_hf as from_hf
from .features.datasets import from_table as from_table
from .features.datasets import from_torchvision as from_torchvision
from .features.datasets import list_datasets as list_datasets
from .features.datasets import load_dataset as load_dataset
from .features.datasets import relabel as relabel
from .features.datasets import subsample as subsample
from .features.datasets import subset_classes as subset_classes
from .features.datasets import transform_images as transform_images
from .features.image_folder import from_image_folder as from_image_folder

__all__ = [
    "Dataset",
    "list_datasets",
    "load_dataset",
    "subset_classes",
    "relabel",
    "transform_images",
    "subsample",
    "from_arrays",
    "from_image_folder",
    "from_table",
    "from_torchvision",
    "from_hf",
    "dataset_fingerprint",
]
