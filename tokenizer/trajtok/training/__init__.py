"""TrajTok's trainer (``train``) and its evaluation (``evaluate``)."""
