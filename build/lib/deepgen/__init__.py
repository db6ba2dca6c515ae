"""deepgen: face deepfake detection in video at corpus scale, built to generalize."""

__version__ = "0.1.0"
