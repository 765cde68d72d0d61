"""Transfer Studio engine: datasets, backbones, training, evaluation, export and prediction.

Importing this package is cheap and never imports torch or Qt; heavy modules are imported where used.
"""

__version__ = "0.1.0"
