"""fer-lightning: multi-task facial expression, valence and arousal recognition."""

__version__ = "0.1.0"
