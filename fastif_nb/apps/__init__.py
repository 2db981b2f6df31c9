"""Applications of fast influence functions (FastIF §5.4 and §6): the retraining check, simulatability, effect visualisation and error correction."""
