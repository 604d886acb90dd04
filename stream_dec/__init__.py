"""stream-dec: continual clustering of embedding streams with Deep Embedded Clustering.

Layers, lowest first (a lower layer never imports a higher one):

- ``stream_dec.io``: reading embedding files.
- ``stream_dec.model``: the DEC maths, training, metrics and checkpoints.
- ``stream_dec.config`` and ``stream_dec.cli``: typed configuration and the command line.
"""

__version__ = "0.1.0"
