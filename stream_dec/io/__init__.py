"""Input and output formats: embedding files (and, later, wire codecs)."""

from stream_dec.io.datasets import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
