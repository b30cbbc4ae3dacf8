"""fer-lightning: multi-task facial expression, valence and arousal recognition."""

import os

__version__ = "0.1.0"

# albumentations asks PyPI for a newer version when imported: no command reaches for the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
