"""Shared test fixtures, from `fastif_nb.testing`: a tiny randomly initialised BERT and the offline tokenizer."""
import pytest
from fastif_nb.testing import tiny_bert, offline_tokenizer

@pytest.fixture(scope='module')
def tiny():
    "(tiny random BERT, the real MiniLM tokenizer)."
    return tiny_bert(), offline_tokenizer()
