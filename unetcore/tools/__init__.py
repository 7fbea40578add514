"""Tools around a net: drawing it (draw), per-layer timing (timing), training-log plots
(plotlog) and PNG pictures for the docs (pictures)."""
