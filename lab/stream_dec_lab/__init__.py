"""The laboratory beside the service: experiments, plots, the local demo and its report.

``evaluate`` (the continual-update experiment, its frontier, baselines, oracle and
controls such as ``grow-random``), ``scenarios`` (window sequences), ``plots``
(matplotlib), ``demo`` (the whole loop on a drifting stream), ``report`` (one
self-contained HTML page) and ``data/`` (the demo's embeddings and texts). It is its own
distribution, ``stream-dec-lab`` (``pip install -e ./lab``), with matplotlib: the
runtime (``pip install stream-dec``, what a labeler or an updater installs) carries none
of it, and imports it only in the ``evaluate`` and ``demo`` commands.
"""
