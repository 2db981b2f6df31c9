"Larger-sample checks of the HANS-style generator (`fastif_nb.hans`) against the real HANS rows."
from pathlib import Path
import pandas as pd
import pytest
import fastif_nb
from fastif_nb.hans import (HANS_SUBCASES, HANS_COLUMNS, generate_hans, hans_capacity,
                            lexical_overlap, is_subsequence, is_constituent)

REAL = Path(fastif_nb.__file__).parent/'data'/'hans'/'hans_eval_small_30.tsv'

@pytest.fixture(scope='module')
def real(): return pd.read_csv(REAL, sep='\t')

@pytest.fixture(scope='module')
def big(): return generate_hans(200, seed=123)

def test_labels_and_names_match_real_rows(real, big):
    assert list(big.columns) == list(real.columns) == HANS_COLUMNS
    assert big.subcase.value_counts().to_dict() == {s: 200 for s in real.subcase}
    want = real.set_index('subcase')[['heuristic', 'template', 'gold_label']]
    got = big.groupby('subcase')[['heuristic', 'template', 'gold_label']].agg(set)
    for s, r in want.iterrows():
        assert got.loc[s].tolist() == [{r.heuristic}, {r.template}, {r.gold_label}], s

def test_every_row_satisfies_its_heuristic(big):
    for r in big.itertuples():
        assert lexical_overlap(r.sentence1, r.sentence2), r.pairID
        if r.heuristic in ('subsequence', 'constituent'): assert is_subsequence(r.sentence1, r.sentence2), r.pairID
        if r.heuristic == 'constituent': assert is_constituent(r.sentence1_binary_parse, r.sentence2), r.pairID
        # binary parse leaves spell the sentence
        assert [w for w in r.sentence1_binary_parse.split() if w not in '()'] == r.sentence1.split()
        assert [w for w in r.sentence2_binary_parse.split() if w not in '()'] == r.sentence2.split()

def test_unique_and_deterministic(big):
    assert not big.duplicated(['sentence1', 'sentence2']).any()
    assert big.pairID.is_unique
    again = generate_hans(200, seed=123, subcases=['sn_NP/Z', 'le_passive'])
    for s in ['sn_NP/Z', 'le_passive']:
        assert again[again.subcase == s].sentence1.tolist() == big[big.subcase == s].sentence1.tolist()

def test_capacity_is_exact_for_a_small_subcase():
    n = hans_capacity('se_adjective')
    full = generate_hans(n, subcases='se_adjective')
    assert len(full) == n and not full.duplicated(['sentence1', 'sentence2']).any()
    with pytest.raises(ValueError, match='allows only'): generate_hans(n + 1, subcases='se_adjective')
