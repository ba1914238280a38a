"""TrajTok's core: the model (``modeling``), its configuration and its losses; ``trajtok.nn`` holds the layers."""
