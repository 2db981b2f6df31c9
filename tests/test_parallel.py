"""The engine's distributed branch on 2-3 gloo CPU processes (a `WorkerPool`): serial == parallel (Exact, CG, LiSSA with
even/uneven T, auto-rescale, candidate sharding, per-test candidates, cached-prefix BERT), a bad rank inside the engine
(NaN data, a different model), and a user's script under torchrun. Raise / die / hang of a rank: tests/test_pool.py."""
import os, subprocess, sys, time
from pathlib import Path
import pytest, torch
from fastif_nb.influence import influence
from fastif_nb.task import InfluenceInputError
from fastif_nb.errors import WorkerError
from fastif_nb.distributed import init_from_env, shard_range
from fastif_nb.parallel import WorkerPool, built_influence, _build
from fastif_nb.testing import demo_problem, demo_cached_problem, _rank_poisoned

PER_TEST = torch.stack([torch.randperm(60, generator=torch.Generator().manual_seed(j))[:7] for j in range(4)])
CASES = {
    'exact': dict(solver='exact'),
    'cg': dict(solver='cg'),
    'lissa_T4_W2': dict(solver='lissa', repeats=4),
    'lissa_T3_W2_uneven': dict(solver='lissa', repeats=3),
    'lissa_fixed_scale': dict(solver='lissa', repeats=3, scale=5.),
    'lissa_shared_odd_candidates': dict(solver='lissa', repeats=3, candidates=[3, 1, 4, 1, 5]),  # shards of 3 and 2
    'exact_per_test_candidates': dict(solver='exact', candidates=PER_TEST),
    'lissa_per_test_candidates': dict(solver='lissa', repeats=3, candidates=PER_TEST),
    'exact_one_candidate': dict(solver='exact', candidates=[7]),  # fewer candidates than ranks: an empty shard
    'lissa_auto_rescaled': dict(solver='lissa', repeats=3, scale_margin=0.02),  # diverges, all ranks retry with 4x scale
}
TOL = 1e-10  # float64; serial and parallel differ only by the order of the repetition sum

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "Serial references in this process: one thread (the workers use cpu_count // W) so a busy machine stays fast."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def serial(builder=demo_problem, **kw):
    task, train, test, solver, ikw = builder(**kw)
    return influence(task, train, test, solver, **ikw).scores

def parallel(builder, workers:int, kw:dict, timeout=300):
    "Influence scores of `builder(**kw)` on a fresh pool of `workers` processes."
    with WorkerPool(workers, timeout=timeout) as pool: return pool.run(built_influence, builder, kw)

CACHED_CAND = torch.stack([torch.randperm(24, generator=torch.Generator().manual_seed(j))[:5] for j in range(3)])

@pytest.fixture(scope='module')
def parallel_results():
    "All CASES, then the cached-prefix BERT, as consecutive jobs on one 2-process pool (starting processes is the slow part)."
    with WorkerPool(2, timeout=300) as pool:
        res = {n: pool.run(built_influence, demo_problem, kw) for n, kw in CASES.items()}
        res['cached_prefix_bert'] = pool.run(built_influence, demo_cached_problem, dict(candidates=CACHED_CAND))
        return res

@pytest.mark.parametrize('name', list(CASES))
def test_serial_equals_parallel(parallel_results, name):
    got, ref = parallel_results[name], serial(**CASES[name])
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < TOL

def test_rescale_happened_serially():
    "The rescaled case really diverged first (so the parallel retry path was exercised, not skipped)."
    with pytest.warns(UserWarning, match='retrying with scale'):
        serial(**CASES['lissa_auto_rescaled'])

def test_sharded_candidates_reassemble_in_order(parallel_results):
    full = parallel_results['exact']
    # scored in other shards/batches than the full run, so equal up to rounding
    assert (parallel_results['exact_per_test_candidates'] - torch.gather(full, 1, PER_TEST)).abs().max() < 1e-12
    assert (parallel_results['exact_one_candidate'] - full[:, [7]]).abs().max() < 1e-12

def test_lissa_is_a_real_estimate(parallel_results):
    "Not a degenerate solve: close to Exact, and another seed gives other numbers."
    ex, li = parallel_results['exact'], parallel_results['lissa_T4_W2']
    assert (li - ex).norm() / ex.norm() < 0.25
    task, train, test, solver, kw = demo_problem('lissa', repeats=4)
    solver.seed = 1
    assert (influence(task, train, test, solver, **kw).scores - li).abs().max() > 1e-3

def test_three_workers_more_ranks_than_repeats():
    "T=2 over W=3 (rank 2 runs no repetition, contributes zeros) and 5 candidates in shards of 2, 2, 1."
    kw = dict(solver='lissa', repeats=2, candidates=[9, 0, 31, 2, 2])
    got = parallel(demo_problem, 3, kw)
    assert (got - serial(**kw)).abs().max() < TOL

def test_cached_prefix_bert(parallel_results):
    "A TopLayers task over cached hidden states (fastif_nb.model) with multi-query and per-test candidates."
    got = parallel_results['cached_prefix_bert']
    ref = serial(demo_cached_problem, candidates=CACHED_CAND)
    assert got.shape == (3, 5)
    assert (got - ref).abs().max() < TOL

def test_one_rank_fails_inside_parallel_influences():
    "Rank 1's test gradients are NaN: its error is re-raised; rank 0, waiting in a collective, is stopped, not left hanging."
    t0 = time.monotonic()
    with pytest.raises(InfluenceInputError, match='Non-finite loss'):
        parallel(_rank_poisoned, 2, dict(mode='nan', solver='lissa', repeats=3), timeout=120)
    assert time.monotonic() - t0 < 90

def test_ranks_built_differently():
    with pytest.raises(WorkerError, match='Ranks hold different parameters'):
        parallel(_rank_poisoned, 2, dict(mode='model'), timeout=120)

def test_bad_input(monkeypatch):
    with pytest.raises(InfluenceInputError, match='must return'): _build(lambda: (1, 2))
    task, train, test, solver, _ = demo_problem()
    with pytest.raises(InfluenceInputError, match='must be a Solver'): influence(task, train, test, 'exact')
    for k in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE'): monkeypatch.delenv(k, raising=False)
    with pytest.raises(InfluenceInputError, match='Launch with torchrun'): init_from_env()

def test_shard_range_partitions():
    for n in range(15):
        for w in (1, 2, 3, 4, 7):
            parts = [shard_range(n, r, w) for r in range(w)]
            assert sum((list(range(*p)) for p in parts), []) == list(range(n))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1

def _cli(args, tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run(args, capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

def torchrun_recipe()->str:
    "The multi-node recipe shown in nbs/06b_parallel.ipynb (a user's script under torchrun), verbatim from the notebook."
    import json, re
    cells = json.loads((Path(__file__).parents[1] / 'nbs' / '06b_parallel.ipynb').read_text())['cells']
    md = next(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown' and '# torchrun --nnodes' in ''.join(c['source']))
    return re.search(r'```python\n(.*?)```', md, re.S).group(1)

def test_torchrun(tmp_path):
    torchrun = Path(sys.executable).parent / 'torchrun'
    if not torchrun.exists(): pytest.skip('torchrun is not installed next to this Python')
    (tmp_path / 'run_influence.py').write_text(torchrun_recipe()); out = tmp_path / 'scores.pt'
    _cli([str(torchrun), '--standalone', '--nproc-per-node', '2', 'run_influence.py', str(out)], tmp_path)
    assert (torch.load(out) - serial(solver='lissa', repeats=3, candidates=[5, 8, 13])).abs().max() < TOL
