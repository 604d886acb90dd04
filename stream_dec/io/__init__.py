"""Input and output formats: embedding files and the wire codecs of the labeler."""

from stream_dec.io.datasets import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
