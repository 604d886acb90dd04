"""The laboratory beside the service: experiments, plots and the local demo.

``evaluate`` (the continual-update experiment, its frontier, baselines, oracle and
controls such as ``grow-random``), ``scenarios`` (window sequences), ``plots``
(matplotlib), ``demo`` (the whole loop on a drifting stream) and ``data/`` (the demo's
embeddings). It needs the ``lab`` extra (matplotlib); the runtime (``model``,
``continual``, ``stream``, ``io``) never imports it, and the labeler's image leaves it out.
"""
