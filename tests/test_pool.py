"""WorkerPool (fastif_nb.parallel) on 2 gloo CPU processes: persistent workers equal serial on consecutive jobs and keep
their PIDs; failures (a rank raises, dies between or during jobs, hangs, setup fails) are loud, never hang, close the
pool and leave no process behind; close(), garbage collection and interpreter exit stop the workers."""
import multiprocessing, os, signal, subprocess, sys, time, types
from pathlib import Path
import pytest, torch
from torch.utils.data import Subset
from fastif_nb.influence import influence
from fastif_nb.task import InfluenceInputError
from fastif_nb.parallel import WorkerPool, WorkerError, influence_setup, influence_job
from fastif_nb.testing import demo_problem, _misbehave, _pool_pids, _pool_misbehave, _touch

TOL = 1e-10  # float64; serial and parallel differ only by the order of the repetition sum

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def gone(pids, within=15.):
    "True once none of `pids` is a live process (zombies count as gone)."
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        live = [p for p in pids if Path(f'/proc/{p}').exists() and 'Z' not in Path(f'/proc/{p}/stat').read_text().split()[2]]
        if not live: return True
        time.sleep(0.2)
    return False

def test_consecutive_jobs_equal_serial_on_the_same_processes():
    "LiSSA T=3 over W=2 (the cached-prefix BERT on a pool: tests/test_parallel.py): two jobs with different test points (per-test, then shared candidates)."
    task, train, test, solver, _ = demo_problem('lissa', repeats=3)
    per_test = torch.stack([torch.randperm(24, generator=torch.Generator().manual_seed(j))[:5] for j in range(2)])
    with WorkerPool(2, influence_setup, (demo_problem, dict(solver='lissa', repeats=3)), timeout=300) as pool:
        pids = pool.run(_pool_pids)
        assert pids == pool.pids and len(set(pids)) == 2 and os.getpid() not in pids
        outs = []
        for rows, cand in (([0, 1], per_test), ([2, 3], [3, 1, 4, 1, 5])):
            got = pool.run(influence_job, Subset(test, rows), solver, cand)
            ref = influence(task, train, Subset(test, rows), solver, cand, progress=False).scores
            assert got.shape == ref.shape == (2, 5) and (got - ref).abs().max() < TOL
            outs.append(got)
        assert (outs[0] - outs[1]).abs().max() > 1e-6  # different test points, different numbers
        assert pool.run(_pool_pids) == pids and pool.jobs == 4 and pool.alive
        assert "W=2, backend='gloo', alive, 4 jobs run" in repr(pool)
    assert not pool.alive and 'closed by close()' in repr(pool) and gone(pids)

def test_workers_take_the_parents_environment_at_start(monkeypatch):
    "A pool started after the environment changed sees the change and its thread count (a forked worker would keep the fork server's)."
    with WorkerPool(2, timeout=120) as first: first.run(_pool_pids)   # this process's fork server (if any) runs from here on
    monkeypatch.setenv('FASTIF_TEST_MARK', 'changed'); monkeypatch.setenv('OMP_NUM_THREADS', '2')
    with WorkerPool(2, timeout=120) as pool: assert pool.run(_pool_pids, 'FASTIF_TEST_MARK') == [('changed', 2)] * 2

def test_setup_tensors_travel_through_shared_memory():
    x = torch.randn(2000, 64, dtype=torch.float64)
    with WorkerPool(2, dict, setup_kwargs=dict(x=x.clone()), timeout=120) as pool:
        s, shared = pool.run(_touch)
        assert shared and s == pytest.approx(x.sum().item(), rel=1e-12)
        assert pool.run(_touch, x[:10].clone())[0] == pytest.approx(x[:10].sum().item(), rel=1e-12)  # job tensors too

def test_rank_raises_closes_the_pool():
    pool = WorkerPool(2, timeout=120)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match='rank 1 was told to fail') as e:
        pool.run(_pool_misbehave, 'raise', 1)
    assert time.monotonic() - t0 < 60                    # rank 0 waits in a barrier: reported after a short grace, killed
    assert '_pool_misbehave' in str(e.value.__cause__)    # the worker's traceback
    assert any('WorkerPool is now closed' in n for n in e.value.__notes__)
    assert not pool.alive and gone(pool.pids)
    with pytest.raises(WorkerError, match=r'This WorkerPool is closed \(job 1 \(_pool_misbehave\) failed\)'):
        pool.run(_pool_pids)

def test_rank_killed_between_jobs():
    pool = WorkerPool(2, timeout=120)
    pids = pool.run(_pool_pids)
    os.kill(pids[1], signal.SIGKILL)
    assert gone([pids[1]])
    t0 = time.monotonic()
    # usually 'died since the last job' (seen before sending); if the kernel has not finished reaping it yet, the job
    # goes out and the death is seen while waiting: either way a WorkerError at once
    with pytest.raises(WorkerError, match=r'rank 1 \(killed by SIGKILL\) died'):
        pool.run(_pool_pids)
    assert time.monotonic() - t0 < 15 and gone(pids) and not pool.alive

def test_rank_dies_during_a_job():
    pool = WorkerPool(2, timeout=120)
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match=r'rank 1 \(exit code 1\) died'):
        pool.run(_pool_misbehave, 'exit', 1)
    assert time.monotonic() - t0 < 60 and gone(pool.pids)

def test_hang_is_a_worker_error_at_the_deadline():
    pool = WorkerPool(2, timeout=8)   # workers forked from the fork server start in well under a second
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match=r'did not finish within timeout=8s: rank\(s\) \[0, 1\]'):
        pool.run(_pool_misbehave, 'hang', 0)
    assert 7.5 < time.monotonic() - t0 < 40 and gone(pool.pids)

def test_setup_fails():
    with pytest.raises(ValueError, match='rank 1 was told to fail'):
        WorkerPool(2, _misbehave, ('raise', 1), timeout=120)
    assert multiprocessing.active_children() == []

def test_bad_input_before_sending_keeps_the_pool():
    with pytest.raises(InfluenceInputError, match='workers must be >= 1'): WorkerPool(0)
    with pytest.raises(InfluenceInputError, match='no lambdas'): WorkerPool(2, lambda: 1)
    assert multiprocessing.active_children() == []
    with WorkerPool(2, timeout=120) as pool:
        with pytest.raises(InfluenceInputError, match='no lambdas'): pool.run(lambda state: 1)
        assert pool.alive and len(pool.run(_pool_pids)) == 2  # nothing was sent, so the pool is still fine

def test_close_is_idempotent_and_leaves_no_children():
    pool = WorkerPool(2, timeout=120)
    pids = pool.pids
    pool.close(); pool.close()
    assert multiprocessing.active_children() == [] and gone(pids)
    with pytest.raises(WorkerError, match=r'closed \(closed by close\(\)\)'): pool.run(_pool_pids)

SCRIPT = """
import sys, time
from fastif_nb.parallel import WorkerPool
from fastif_nb.testing import _pool_pids
if __name__ == '__main__':
    pool = WorkerPool(2, timeout=120)
    print(*pool.run(_pool_pids), flush=True)
    if sys.argv[1] == 'wait': time.sleep(600)
"""

@pytest.mark.parametrize('how', ['exit', 'killed'])
def test_no_orphans(how, tmp_path):
    "Interpreter exit without close() stops the workers; if the parent is SIGKILLed, they exit when their pipe closes."
    script = tmp_path / 'pool_script.py'; script.write_text(SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([sys.executable, str(script), 'exit' if how == 'exit' else 'wait'], stdout=subprocess.PIPE, text=True, env=env)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 2
    if how == 'killed': p.kill()
    p.wait(60)
    assert gone(pids, within=20)


# ---- loopback only: nothing on another machine can reach a pool ----
import ipaddress, socket

def _non_loopback_addresses()->list:
    "(family, address) of this machine's non-loopback IPv4/IPv6 addresses (interfaces and the hostname)."
    import psutil
    found = {(a.family, a.address.split('%')[0]) for addrs in psutil.net_if_addrs().values() for a in addrs
             if a.family in (socket.AF_INET, socket.AF_INET6)}
    try: found |= {(ai[0], ai[4][0]) for ai in socket.getaddrinfo(socket.gethostname(), None) if ai[0] in (socket.AF_INET, socket.AF_INET6)}
    except OSError: pass
    ok = lambda a: not (ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_link_local or ipaddress.ip_address(a).is_unspecified)
    return sorted((f, a) for f, a in found if ok(a))

def test_rendezvous_port_refuses_non_loopback_connections():
    import psutil
    addrs = _non_loopback_addresses()
    if not addrs: pytest.skip('this machine has no non-loopback address to connect from')
    with WorkerPool(2, timeout=120) as pool:
        for fam, a in addrs:
            with socket.socket(fam) as s:
                s.settimeout(5); assert s.connect_ex((a, pool.port)) != 0, f'{a} port {pool.port} accepted a connection'
        with socket.create_connection(('127.0.0.1', pool.port), timeout=5): pass  # the port is live: loopback connects
        parent = [c.laddr for c in psutil.Process().net_connections('inet') if c.status == psutil.CONN_LISTEN and c.laddr.port == pool.port]
        workers = [c.laddr for pid in pool.pids for c in psutil.Process(pid).net_connections('inet') if c.status == psutil.CONN_LISTEN]
        assert len(parent) == 1 and all(ipaddress.ip_address(l.ip).is_loopback for l in parent + workers), (parent, workers)
        assert pool.run(_pool_pids) == pool.pids  # and the pool works
    assert socket.socket().connect_ex(('127.0.0.1', pool.port)) != 0  # closed with the pool

@pytest.mark.parametrize('src,guarded', [("fif.explain(x, workers=2)\n", False), ("if __name__ == '__main__':\n    main()\n", True),
                                         ('if "__main__" == __name__: main()\n', True)])
def test_guard_hint_reads_the_script(tmp_path, monkeypatch, src, guarded):
    "The hint appears only when every worker exited with code 1 and the main script has no guard."
    from fastif_nb.parallel import _main_guard_hint
    f = tmp_path / 's.py'; f.write_text(src)
    monkeypatch.setitem(sys.modules, '__main__', types.SimpleNamespace(__file__=str(f)))
    assert (_main_guard_hint([1, 1]) == '') == guarded
    assert _main_guard_hint([1, -9]) == ''  # a rank killed by a signal: not a re-import failure
    monkeypatch.setitem(sys.modules, '__main__', types.SimpleNamespace())  # a notebook or the REPL: no script
    assert _main_guard_hint([1, 1]) == ''

def test_script_without_main_guard_gets_a_hint(tmp_path):
    "A script that starts a pool at module level makes every spawned worker fail on re-import: the error says why."
    script = tmp_path / 'unguarded.py'
    script.write_text('from fastif_nb.parallel import WorkerPool\npool = WorkerPool(1, timeout=120)\nprint("pool started")\n')
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1])})
    assert r.returncode != 0 and 'pool started' not in r.stdout
    assert "put that code under `if __name__ == '__main__':`" in r.stderr and 'unguarded.py' in r.stderr, r.stderr[-2000:]
