"""Files in and out: video decoding (``video``), video writing (``writer``), trajectory labels (``labels``),
weights loading (``weights``), training checkpoints (``checkpoints``), YAML configs with overrides (``config``) and
the authors' released weights (``release``)."""
