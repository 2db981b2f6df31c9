"""`run_quality` end to end on a tiny random BERT: report files, and exact agreement when the two runs share a solver."""
import numpy as np
import pytest, torch
from fastif_nb.data import load_mnli
from fastif_nb.fastif import FastIF
from fastif_nb.lissa import LiSSA
from fastif_nb.quality import run_quality

@pytest.fixture(scope='module')
def fif(tiny):
    model, tok = tiny
    return FastIF(model, tok, load_mnli('train').subset(range(80)), n_frozen_layers=2, progress=False)

def test_same_solver_is_perfectly_correlated(fif, tmp_path):
    dev = load_mnli('dev_matched')
    idx = fif.pick_points(dev, 1, 1)
    assert len(idx) == 2
    lissa = LiSSA(depth=15, batch_size=2, repeats=1, damping=0.1, scale=20., seed=3)
    # reseed=0 and the same solver for Fast and Full: every comparison is of identical s_test estimates
    corr, rec, secs = run_quality(fif, dev.subset(idx), lissa, lissa, k=30, reseed=0, out_dir=tmp_path, ks=(5, 30, 80), ms=(5, 10))
    for name, df in corr.items():
        np.testing.assert_allclose(df[['pearson', 'spearman', 'kendall']].values, 100, atol=1e-6, err_msg=name)
    assert sorted(df.correct.tolist()) == [False, True]
    full_k = rec.query("k == 80")                      # k = N: every top-m point is a candidate
    np.testing.assert_allclose(full_k.recall.values, 1.0)
    assert (tmp_path / 'quality.md').read_text().count('| Fast') >= 2 and (tmp_path / 'recall.png').stat().st_size > 0

def test_independent_seeds_differ(fif):
    dev = load_mnli('dev_matched').subset(range(2))
    lissa = LiSSA(depth=15, batch_size=1, repeats=1, damping=0.1, scale=20., seed=3)
    corr, _, _ = run_quality(fif, dev, lissa, lissa, k=30, reseed=7, ks=(5, 30), ms=(5,))
    ceiling = corr['Fast vs Fast, another seed (ceiling)']
    assert (ceiling.pearson < 100 - 1e-6).all()        # another seed is another estimate

def test_trust_report_certifies_block_cg_and_lissa(fif, tmp_path):
    "BlockCG on all N: its own residual is the exact one on all N; on a subsample, the all-N residual is larger; LiSSA gets error bars."
    from fastif_nb.blockcg import BlockCG
    from fastif_nb.quality import trust_report
    dev = load_mnli('dev_matched').subset(range(2))
    configs = {'cg all': BlockCG(damping=2.0, tol=1e-6, progress=False), 'cg sub': BlockCG(damping=2.0, tol=1e-6, hessian_size=20, progress=False),
               'lissa': LiSSA(depth=20, batch_size=4, repeats=2, damping=2.0, scale=20., seed=0)}
    cert, bars = trust_report(fif, dev, configs, k=30, n=2, out_dir=tmp_path)
    c = cert.set_index('config')
    assert c.loc['cg all', 'residual_own'] <= 1.01e-6 and c.loc['cg all', 'residual_all_N'] <= 1e-5
    assert c.loc['cg sub', 'residual_own'] <= 1.01e-6 and c.loc['cg sub', 'residual_all_N'] > 1e-3  # 20 of 80 examples: another system
    assert c.loc['cg all', 'effective_damping'] == 2.0 and np.isnan(c.loc['cg all', 'stability'])
    assert 0 <= c.loc['lissa', 'stability'] <= 1 and c.loc['lissa', 'stderr_over_score_top10'] > 0
    assert len(bars) > 0 and bars.stderr.notna().all()  # the error-bar table is LiSSA's (the first with error bars)
    assert 'Error bars (lissa)' in (tmp_path / 'trust.md').read_text()

def test_reference_rows(fif, tmp_path):
    "With the reference as Full (same deterministic solve), Full vs reference is exact; Fast vs reference is scored on Fast's candidates."
    from fastif_nb.blockcg import BlockCG
    dev = load_mnli('dev_matched').subset(range(2))
    cg = BlockCG(damping=2.0, tol=1e-6, progress=False)
    lissa = LiSSA(depth=15, batch_size=2, repeats=1, damping=2.0, scale=20., seed=3)
    corr, rec, secs = run_quality(fif, dev, lissa, cg, k=30, ks=(5, 30), ms=(5,), reference=cg, default=cg, out_dir=tmp_path)
    for row in ('Full vs converged reference (all N)', 'FastIF default (k=30) vs converged reference'):  # the same solve as the reference
        np.testing.assert_allclose(corr[row][['pearson', 'spearman', 'kendall']].values, 100, atol=1e-6)
    assert list(corr)[:3] == ['FastIF default (k=30) vs converged reference', 'Fast (k=30) vs converged reference', 'Full vs converged reference (all N)']
    assert 'FastIF default: kNN k=30, BlockCG(' in (tmp_path / 'quality.md').read_text()
    assert (corr['Fast (k=30) vs converged reference'].pearson < 100 - 1e-6).all() and secs['reference_residual'] <= 1.01e-6
