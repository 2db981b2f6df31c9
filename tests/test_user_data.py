"""load_user_data: every source (CSV, TSV, JSONL, JSON, Parquet, saved HF Dataset/DatasetDict, in-memory Dataset, DataFrame,
list of dicts) gives the same TextPairDataset; columns detected or named; label names from the model, a ClassLabel or
the ids; unknown labels, missing columns and empty inputs are clear errors."""
from types import SimpleNamespace
import pandas as pd, pytest
from fastif_nb.user_data import UserDataError, detect_columns, load_user_data

ROWS = pd.DataFrame({'sentence1': ['A cat sits.', 'Rain falls.', 'He ran.', 'It is 5.'], 'sentence2': ['An animal sits.', 'It is dry.', 'He moved.', 'It is 7.'],
                     'gold_label': ['entailment', 'contradiction', 'entailment', 'neutral']})
NLI = SimpleNamespace(config=SimpleNamespace(id2label={0: 'entailment', 1: 'neutral', 2: 'contradiction'}, num_labels=3))
GENERIC = SimpleNamespace(config=SimpleNamespace(id2label={0: 'LABEL_0', 1: 'LABEL_1', 2: 'LABEL_2'}, num_labels=3))
IDS = [0, 2, 0, 1]

def writers(d):
    ROWS.to_csv(d/'a.csv', index=False); ROWS.to_csv(d/'a.tsv', sep='\t', index=False)
    ROWS.to_json(d/'a.jsonl', orient='records', lines=True); ROWS.to_json(d/'a.json', orient='records'); ROWS.to_parquet(d/'a.parquet')
    return [d/f'a.{e}' for e in ('csv', 'tsv', 'jsonl', 'json', 'parquet')]

def test_every_file_format_gives_the_same_dataset(tmp_path):
    for f in writers(tmp_path):
        ds = load_user_data(f, model=NLI)
        assert (ds.texts_a, ds.texts_b, ds.labels, ds.label_names) == (ROWS.sentence1.tolist(), ROWS.sentence2.tolist(), IDS, ['entailment', 'neutral', 'contradiction']), f
        assert ds.name == f.name

def test_hf_datasets_in_memory_and_saved(tmp_path):
    datasets = pytest.importorskip('datasets'); datasets.disable_progress_bars()
    feats = datasets.Features({'premise': datasets.Value('string'), 'hypothesis': datasets.Value('string'),
                               'label': datasets.ClassLabel(names=['entailment', 'neutral', 'contradiction'])})
    hf = datasets.Dataset.from_dict({'premise': ROWS.sentence1.tolist(), 'hypothesis': ROWS.sentence2.tolist(), 'label': IDS}, features=feats)
    assert load_user_data(hf).labels == IDS and load_user_data(hf).label_names == ['entailment', 'neutral', 'contradiction']
    datasets.DatasetDict(train=hf, test=hf.select([0])).save_to_disk(str(tmp_path/'dd'))
    assert load_user_data(tmp_path/'dd', model=GENERIC).labels == IDS  # generic model names: the ClassLabel's names
    assert len(load_user_data(tmp_path/'dd', split='test')) == 1
    with pytest.raises(UserDataError, match="holds the splits \\['train', 'test'\\], not 'dev'"): load_user_data(tmp_path/'dd', split='dev')
    (tmp_path/'plain').mkdir()
    with pytest.raises(UserDataError, match="not a saved Hugging Face dataset"): load_user_data(tmp_path/'plain')

def test_model_names_win_and_ids_work():
    perm = SimpleNamespace(config=SimpleNamespace(id2label={0: 'contradiction', 1: 'entailment', 2: 'neutral'}, num_labels=3))
    assert load_user_data(ROWS, model=perm).labels == [1, 0, 1, 2]  # the model's ids, not the data's order
    ids = ROWS.assign(gold_label=['0', '2', '0', '1'])
    assert load_user_data(ids, model=GENERIC).labels == IDS and load_user_data(ids, model=GENERIC).label_names == ['LABEL_0', 'LABEL_1', 'LABEL_2']
    with pytest.raises(UserDataError, match="4 rows have labels the model does not know"): load_user_data(ROWS, model=GENERIC)
    assert load_user_data(ROWS, model=GENERIC, label_names=['entailment', 'neutral', 'contradiction']).labels == IDS
    assert load_user_data(ROWS).label_names == ['contradiction', 'entailment', 'neutral']  # no model: sorted names
    with pytest.raises(UserDataError, match="2 label names .* for a model with 3 classes"):
        load_user_data(ROWS.iloc[:2], model=GENERIC, label_names=['entailment', 'contradiction'])

def test_single_text_and_lists_of_dicts():
    rows = [{'text': 'great', 'label': 1}, {'text': 'awful', 'label': 0}]
    ds = load_user_data(rows)
    assert ds.texts_b is None and ds.labels == [1, 0] and ds.label_names == ['0', '1']
    assert load_user_data(ROWS, text_b='', model=NLI).texts_b is None  # a pair table read as single texts
    assert detect_columns(['Text', 'Label']) == ('Text', None, 'Label')

def test_errors(tmp_path):
    with pytest.raises(UserDataError, match="Column 'prem' \\(first text\\) is not in the data; its columns are"): load_user_data(ROWS, text_a='prem')
    with pytest.raises(UserDataError, match="Could not find the text column"): load_user_data(pd.DataFrame({'body': ['x'], 'label': [0]}))
    (tmp_path/'e.csv').write_text('')
    with pytest.raises(UserDataError, match="is empty"): load_user_data(tmp_path/'e.csv')
    (tmp_path/'x.txt').write_text('a')
    with pytest.raises(UserDataError, match="unknown file type '.txt'"): load_user_data(tmp_path/'x.txt')
    with pytest.raises(UserDataError, match="has no rows"): load_user_data(ROWS.iloc[:0])
    bad = ROWS.copy(); bad.loc[1, 'sentence2'] = None
    with pytest.raises(UserDataError, match="text_b in row 1 is float \\(nan\\), not a string"): load_user_data(bad, model=NLI)
    with pytest.raises(UserDataError, match="'maybe' in 1 row\\(s\\) \\(2\\)"): load_user_data(ROWS.assign(gold_label=['entailment', 'neutral', 'maybe', 'neutral']), model=NLI)
