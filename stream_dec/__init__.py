"""stream-dec: continual clustering of embedding streams with Deep Embedded Clustering.

Layers, lowest first (a lower layer never imports a higher one):

- ``stream_dec.typed``, ``stream_dec.config``: typed configuration (no numerics).
- ``stream_dec.io``: embedding files and the labeler's wire formats.
- ``stream_dec.model``: the DEC maths, network, training, metrics and checkpoints.
- ``stream_dec.continual``: update strategies and the promotion gate.
- ``stream_dec.stream``: Kafka and Redis shells: labeler, reservoir, updater, versions.
- ``stream_dec.cli``: the command line, which maps config files to the components.

Beside them, ``stream_dec_lab`` (experiments, plots, the demo: its own distribution in ``lab/``)
imports the runtime; of the runtime only the CLI's `evaluate` and `demo` commands import it,
when they run.
"""

__version__ = "0.1.0"
