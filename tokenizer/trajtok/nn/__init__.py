"""Building blocks of the TrajTok model: backbone wrapper, Perceivers, positions, segmenter, trajectory encoder."""
