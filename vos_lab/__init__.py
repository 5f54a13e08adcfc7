"""vos_lab: helpers for a course on self-supervised dense correspondence for video object segmentation."""

from vos_lab.errors import VosLabError

__all__ = ["VosLabError"]
__version__ = "0.1.0"
