"""layerfs: a userspace union filesystem for container images."""

__version__ = "0.1.0"
