"""Training TrajVLM: the config, the data, the Trainer, export, building a base, the tower and the stage-0 warm-up.

Library code only (the ``trajvlm`` command's sub-commands live in ``trajvlm.cli``). Nothing in ``trajvlm.inference``
or ``trajvlm.serve`` imports this package: serving a model never loads the Trainer stack. Import the modules
directly (``from trajvlm.training.trainer import train``); this ``__init__`` imports nothing.
"""
