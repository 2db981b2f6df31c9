"""Applications of fast influence functions (FastIF §6): correcting model errors, and more."""
