"""s_test speed/quality trade-off of LiSSA (paper Sec. 5.3 / App. B.2, Fig. 3b / Fig. 9) on the fine-tuned MiniLM / MNLI.

Run (full grid):  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stest.py --workers 2
                  -> benchmarks/results/stest.md and stest.png. The estimated wall time is printed before the grid starts;
                  `--estimate` stops there (setup ~3-5 min + probes ~1 min).
Smoke (seconds, tiny random BERT, nothing in results/):  .venv/bin/python benchmarks/stest.py --smoke [--workers 2]
Options: --batch-sizes 1 2 4 8 16 32 (`--big` adds 64 128), --depth 400, --checkpoints 50 100 200 400, --repeats 4,
--points N_CORRECT N_WRONG (default 2 2), --workers W, --damping 0.01, --scale S (default: one automatic B=1 estimate),
--out DIR.

What it does: for every batch size B, ONE LiSSA run of depth J_max with T repetitions (seed 0, the same damping and the same
fixed scale for every B, so only B/J/T vary) on the test-loss gradients of all test points; `LiSSA(checkpoints=...)`
keeps each repetition's estimate at every J of the grid, so one run gives all (J, T=1) and (J, T) configurations.
Reference s_ref = the most expensive configuration of the grid (largest B, J_max, T), as in the paper. Error per test
point = ||s - s_ref|| / ||s_ref||; T=1: mean over the T single repetitions of their errors; T: error of their average.
Time = CPU seconds (time.process_time of a single-threaded process) per test point for J*T recursion steps, from the
per-step time of the whole B run. With --workers W the B runs are spread over W forked processes (one thread each):
the CPU-second timings mean the same either way, only the grid's wall time changes. Multi-RHS vs one point at a time is
probed before the grid (a few steps per B) and the cheaper is used: both give the same numbers (same sample streams); on
this CPU they cost within ~10% of each other (an m-column HVP costs ~m single ones). If the automatic scale diverges, the
whole grid restarts with 4x the scale (as `LiSSA.with_rescale`); a given --scale stops instead.
Cost on this machine (2+2 points): ~23 ms CPU per step per point per unit of B, so the default grid is ~150 min CPU:
~80 min wall with --workers 2 on two free cores (B=32 alone is half of it), ~155 min with one worker; plus ~3 min setup.
"""
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
import argparse, statistics, tempfile, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from fastif_nb.lissa import LiSSA, LiSSADivergedError
from fastif_nb.influence import query_gradients

RESULTS = Path(__file__).parent / 'results'
_G = {}  # the problem, set before forking so workers inherit it instead of unpickling 0.7 GB of cached states

# ---------------------------------------------------------------- problems
def _predict(task, data)->torch.Tensor:
    "Argmax predictions of the task's model on a dict-collated dataset."
    b = task.batch(data, range(len(data)))
    with torch.no_grad(): out = task.model(**{k: v for k, v in b.items() if k != 'labels'})
    return getattr(out, 'logits', out).argmax(-1)

def setup_real(n_correct:int, n_wrong:int)->dict:
    "The fine-tuned MiniLM on the MNLI sample, with test gradients of dev-matched points (correct first, then wrong)."
    from fastif_nb.finetune import train_or_load
    from fastif_nb.model import DEFAULT_FROZEN
    from fastif_nb.data import load_mnli
    from fastif_nb.fastif import FastIF
    model, tok, _ = train_or_load(num_labels=3, progress=False)
    fif = FastIF(model, tok, load_mnli('train'), n_frozen_layers=DEFAULT_FROZEN, progress=False)
    dev = load_mnli('dev_matched')
    idx = fif.pick_points(dev, n_correct, n_wrong)
    _, probs, target, cached = fif._prepare(dev.subset(idx))  # gold labels: the gradient is that of the test loss
    correct = (probs.argmax(-1) == target).tolist()
    desc = (f'Fine-tuned MiniLM on the {len(fif.train):,}-pair MNLI sample, {fif.task.n_params:,} influence parameters above '
            f'{fif.n_frozen_layers} frozen layers; dev-matched rows {idx}')
    return dict(task=fif.task, train=fif.train_cached, test=cached, correct=correct, desc=desc)

def setup_smoke(n_correct:int, n_wrong:int)->dict:
    "A tiny random float64 BERT with a cached prefix (seconds); its own predictions define correct/wrong."
    from fastif_nb.testing import demo_cached_problem
    task, train, test, _, _ = demo_cached_problem(n_train=48, n_test=16, seed=0)
    ok = (_predict(task, test) == test.labels).tolist()
    pick = [i for i, o in enumerate(ok) if o][:n_correct] + [i for i, o in enumerate(ok) if not o][:n_wrong]
    sub = type(test)([test.hidden_states[i] for i in pick], test.labels[pick], test.n_frozen_layers)
    return dict(task=task, train=train, test=sub, correct=[ok[i] for i in pick],
                desc=f'SMOKE: tiny random float64 BERT (demo_cached_problem), {task.n_params:,} parameters, {len(train)} training items')

# ---------------------------------------------------------------- runs
def _solver(B:int, depth:int, **kw)->LiSSA:
    g = _G['cfg']
    return LiSSA(depth=depth, batch_size=B, repeats=g['repeats'], damping=g['damping'], scale=g['scale'], seed=0, **kw)

def _cpu(f)->float:
    "CPU seconds of f()."
    t = time.process_time(); f(); return time.process_time() - t

def probe(B:int, steps:int=6)->dict:
    "CPU seconds per recursion step and test point: all m points as one multi-RHS solve vs one point at a time."
    task, train, V = _G['task'], _G['train'], _G['V']
    run = lambda W: LiSSA(depth=steps, batch_size=B, damping=_G['cfg']['damping'], scale=_G['cfg']['scale']).solve(task, train, W, progress=False)
    run(V[:, :1])  # warm-up
    m = V.shape[1]
    multi = _cpu(lambda: run(V)) / (steps * m)
    single = _cpu(lambda: [run(V[:, i]) for i in range(m)]) / (steps * m)
    return dict(multi=multi, single=single)

def run_B(B:int)->dict:
    "One LiSSA run of depth J_max, T repetitions at batch size B; the per-repetition snapshots go to a file."
    torch.set_num_threads(1)
    task, train, V, cfg = _G['task'], _G['train'], _G['V'], _G['cfg']
    cols = [slice(None)] if cfg['mode'] == 'multi' else [slice(i, i + 1) for i in range(V.shape[1])]
    parts, t0, w0 = [], time.process_time(), time.perf_counter()
    for c in cols:
        l = _solver(B, cfg['depth'], checkpoints=cfg['checkpoints'])
        try: l.solve(task, train, V[:, c], progress=False)
        except LiSSADivergedError as e: return dict(B=B, error=str(e))
        parts.append(l.repeat_snapshots_)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    snaps = {t: {j: torch.cat([p[t][j] for p in parts], 1) for j in cfg['checkpoints']} for t in range(cfg['repeats'])}
    path = Path(cfg['tmp']) / f'B{B}.pt'; torch.save(snaps, path)
    print(f'  B={B:>3}: {cpu:7.1f} CPU s, {wall:7.1f} s wall ({cfg["repeats"]}×{cfg["depth"]} steps)', flush=True)
    return dict(B=B, cpu=cpu, wall=wall, path=str(path))

def _order(Bs:list)->list:
    "Smallest B first (it is the one most likely to diverge: fail fast), then largest first (balances the workers)."
    Bs = sorted(Bs); return Bs[:1] + Bs[:0:-1]

def makespan(costs:list, workers:int)->float:
    "Wall time of jobs with these costs handed out in order to the first free of `workers` workers."
    free = [0.] * workers
    for c in costs: i = free.index(min(free)); free[i] += c
    return max(free)

class Diverged(Exception): pass

def run_grid(Bs:list, workers:int)->list:
    "run_B for every B, in this process or on `workers` forked processes (which inherit the problem); stops at a divergence."
    import multiprocessing as mp
    res, pool = [], mp.get_context('fork').Pool(workers) if workers > 1 else None
    try:
        for r in (pool.imap_unordered(run_B, _order(Bs)) if pool else map(run_B, _order(Bs))):
            if 'error' in r: raise Diverged(f"B={r['B']}: {r['error']}")
            res.append(r)
    finally:
        if pool: pool.terminate(); pool.join()
    return sorted(res, key=lambda r: r['B'])

def run_grid_rescaled(Bs:list, workers:int, auto:bool, max_rescale:int=3)->list:
    "run_grid; if it diverges with the automatic scale, restart the whole grid with 4x the scale (as `LiSSA.with_rescale`)."
    cfg = _G['cfg']
    for attempt in range(max_rescale + 1):
        try: return run_grid(Bs, workers)
        except Diverged as e:
            if not auto or attempt == max_rescale: raise SystemExit(
                f"LiSSA diverged with the fixed scale {cfg['scale']:.4g} ({e}).\nRerun with a larger --scale, e.g. {4 * cfg['scale']:.4g}.")
            cfg['scale'] *= 4; cfg['rescaled'] = cfg.get('rescaled', 0) + 1
            print(f'diverged ({str(e)[:80]}...): restarting the grid with scale {cfg["scale"]:.4g}', flush=True)

# ---------------------------------------------------------------- errors, report
def errors(runs:list, cfg:dict)->tuple:
    "Rows (B, J, T, per-point time, per-point relative errors) against the most expensive configuration."
    T, Js, m = cfg['repeats'], cfg['checkpoints'], cfg['m']
    ref_run = torch.load(runs[-1]['path'])
    ref = torch.stack([ref_run[t][Js[-1]] for t in range(T)]).mean(0); del ref_run
    rn = ref.norm(dim=0)
    rows = []
    for r in runs:
        snaps, step = torch.load(r['path']), r['cpu'] / (T * cfg['depth'] * m)
        for j in Js:
            S = torch.stack([snaps[t][j] for t in range(T)])   # [T, p, m]
            e1 = ((S - ref).norm(dim=1) / rn).mean(0)          # mean over single repetitions, [m]
            eT = (S.mean(0) - ref).norm(dim=0) / rn
            rows += [dict(B=r['B'], J=j, T=1, time=step * j, err=e1.tolist()),
                     dict(B=r['B'], J=j, T=T, time=step * j * T, err=eT.tolist())]
    return rows, ref

def _ms(x:list)->str: return f'{statistics.mean(x):.3f} ± {statistics.pstdev(x):.3f}' if x else ''

def report(rows:list, runs:list, cfg:dict, info:dict, out:Path):
    "Markdown table + 2-panel figure."
    corr = info['correct']; split = sum(corr) >= 2 and len(corr) - sum(corr) >= 2
    Bmax, Jmax, T = runs[-1]['B'], cfg['checkpoints'][-1], cfg['repeats']
    mode = ('all m test points as one multi-RHS solve (time per point = run time / m)' if cfg['mode'] == 'multi'
            else 'one test point at a time (same sample stream, so the same numbers as a multi-RHS solve)')
    L = ['# s_test speed/quality trade-off (paper Fig. 3b / Fig. 9)\n',
         f'{info["desc"]}; m = {cfg["m"]} test points ({sum(corr)} correctly, {len(corr) - sum(corr)} wrongly predicted).  ',
         f'LiSSA, damping {cfg["damping"]}, one fixed scale s = {cfg["scale"]:.4g} for every configuration ({cfg["scale_src"]}'
         + (f'; ×4^{cfg["rescaled"]} after the grid diverged with the estimate, as `LiSSA.with_rescale` does' if cfg.get('rescaled') else '')
         + '), seed 0. '
         f'For each B one run of depth {cfg["depth"]} with T = {T} repetitions keeps the estimates at J ∈ {list(cfg["checkpoints"])} '
         '(`LiSSA(checkpoints=...)`).\n',
         f'**Reference** s_ref = the most expensive configuration of the grid (B = {Bmax}, J = {Jmax}, T = {T}), as in the paper: '
         'its own error is 0 by construction, and errors of configurations close to it understate their distance to the exact '
         'inverse HVP. **Error** = ‖s − s_ref‖/‖s_ref‖ per test point, mean ± std over points; T = 1: the mean over the '
         f'{T} single repetitions of their errors; T = {T}: the error of their average. Note: along the flattest directions '
         f'(Hessian eigenvalue ≈ 0) the series contracts only by (1 − λ/s) per step, (1 − {cfg["damping"]}/{cfg["scale"]:.4g})^{Jmax} = '
         f'{(1 - cfg["damping"] / cfg["scale"]) ** Jmax:.3f}, so no J here is converged there: differences between J are '
         'largely the truncation of the series, which the reference shares.\n',
         f'**Time** = CPU seconds (time.process_time, single-threaded process) per test point for J·T recursion steps = per-step '
         f'time of the whole B run × J × T. Repetitions run one after another here; they are independent, so on T workers the '
         f'wall time of T = {T} is about that of T = 1. Run mode: {mode}. Probe (CPU ms per step per test point, '
         'multi-RHS vs one at a time): ' + ', '.join(f'B={B}: {p["multi"] * 1e3:.0f} vs {p["single"] * 1e3:.0f}'
                                                      for B, p in sorted(cfg['probe'].items())) + '.  ',
         f'Grid run on {cfg["workers"]} process(es) (fork, one thread each): {cfg["grid_wall"] / 60:.1f} min wall, '
         f'{sum(r["cpu"] for r in runs) / 60:.1f} min CPU.\n',
         '| B | J | T | time per test point (CPU s) | rel. error, all | ' + ('correct | wrong |' if split else ''),
         '|---|---|---|---|---|' + ('---|---|' if split else '')]
    for r in sorted(rows, key=lambda r: (r['T'], r['J'], r['B'])):
        e = r['err']; ref = r['B'] == Bmax and r['J'] == Jmax and r['T'] == T
        cells = [str(r['B']), str(r['J']), str(r['T']), f'{r["time"]:.3g}', '0 (reference)' if ref else _ms(e)]
        if split: cells += ['', ''] if ref else [_ms([x for x, c in zip(e, corr) if c]), _ms([x for x, c in zip(e, corr) if not c])]
        L.append('| ' + ' | '.join(cells) + ' |')
    L += ['', '| B | CPU ms per step per test point | run CPU s | run wall s |', '|---|---|---|---|']
    L += [f'| {r["B"]} | {r["cpu"] / (T * cfg["depth"] * cfg["m"]) * 1e3:.1f} | {r["cpu"]:.0f} | {r["wall"]:.0f} |' for r in runs]
    get = lambda B, J, t: next(r for r in rows if (r['B'], r['J'], r['T']) == (B, J, t))
    Bmin, Jmid = runs[0]['B'], cfg['checkpoints'][len(cfg['checkpoints']) // 2]
    a, b, c = get(Bmin, Jmid, T), get(Bmin, Jmid, 1), get(Bmax, Jmax, 1)
    L += ['', f'Small B, medium J: B={Bmin}, J={Jmid}, T={T} costs {a["time"]:.3g} s (or {b["time"]:.3g} s wall on {T} workers) '
          f'at error {statistics.mean(a["err"]):.3f}; T=1 alone {statistics.mean(b["err"]):.3f}. A single run of the '
          f'reference setting (B={Bmax}, J={Jmax}, T=1) costs {c["time"]:.3g} s at error {statistics.mean(c["err"]):.3f}.',
          '', 'Paper (BERT-base, B ∈ {1..128}, J ∈ {700..1300}, T ∈ {1, 4}, 8 points): time grows with B and J, error falls '
          'with B and J; at small B a larger T makes up most of the loss, so small B + medium J + larger T (parallel) '
          'trades a small loss of quality for a large speed-up.']
    out.mkdir(parents=True, exist_ok=True)
    (out / 'stest.md').write_text('\n'.join(L) + '\n'); print('\n'.join(L))
    plot(rows, cfg, out / 'stest.png')

def plot(rows:list, cfg:dict, path:Path):
    "Left: time per test point vs B (T=1), one line per J. Right: relative error vs B, one line per J and T."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    T, Js = cfg['repeats'], cfg['checkpoints']
    colors = plt.cm.viridis([i / max(1, len(Js) - 1) for i in range(len(Js))])
    for j, col in zip(Js, colors):
        r1 = [r for r in rows if r['J'] == j and r['T'] == 1]
        a1.plot([r['B'] for r in r1], [r['time'] for r in r1], 'o-', c=col, label=f'J={j}')
        for t, ls in ((1, '-'), (T, '--')):
            rt = [r for r in rows if r['J'] == j and r['T'] == t and max(r['err']) > 0]  # the reference has error 0
            a2.errorbar([r['B'] for r in rt], [statistics.mean(r['err']) for r in rt], [statistics.pstdev(r['err']) for r in rt],
                        fmt='o' + ls, c=col, capsize=2, ms=3, label=f'J={j}, T={t}')
    a1.set(xscale='log', yscale='log', xlabel='batch size B', ylabel='CPU s per test point (T=1)', title='computation time')
    a2.set(xscale='log', yscale='log', xlabel='batch size B', ylabel='‖s − s_ref‖ / ‖s_ref‖', title='estimation error (vs largest B, J, T)')
    Bs = sorted({r['B'] for r in rows})
    for a in (a1, a2):
        a.xaxis.set_minor_locator(matplotlib.ticker.NullLocator()); a.set_xticks(Bs); a.set_xticklabels(Bs); a.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)

# ---------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--smoke', action='store_true', help='seconds-long run on a tiny random BERT (writes to /tmp/fastif_stest_smoke)')
    p.add_argument('--estimate', action='store_true', help='set up, probe, print the estimated grid time and stop')
    p.add_argument('--batch-sizes', type=int, nargs='+', default=None)
    p.add_argument('--big', action='store_true', help='add B = 64 and 128 to the default grid')
    p.add_argument('--depth', type=int, default=None, help='J_max (default 400; smoke 40)')
    p.add_argument('--checkpoints', type=int, nargs='+', default=None, help='the Js (default J_max/8, /4, /2, J_max)')
    p.add_argument('--repeats', type=int, default=4)
    p.add_argument('--points', type=int, nargs=2, default=(2, 2), metavar=('N_CORRECT', 'N_WRONG'))
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--damping', type=float, default=None, help='default 0.01 (smoke 0.1: the random tiny BERT has negative curvature)')
    p.add_argument('--scale', type=float, default=None, help='fixed LiSSA scale (default: automatic estimate with B=1, as speed.py)')
    p.add_argument('--out', type=Path, default=None)
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    Bs = a.batch_sizes or ([1, 2, 4, 8] if a.smoke else [1, 2, 4, 8, 16, 32] + ([64, 128] if a.big else []))
    depth = a.depth or (40 if a.smoke else 400)
    Js = tuple(sorted(set(a.checkpoints or [depth // 8, depth // 4, depth // 2, depth])))
    if Js[-1] != depth: raise SystemExit(f'The largest checkpoint must be --depth ({depth}); got {Js}.')
    damping = a.damping if a.damping is not None else (0.1 if a.smoke else 0.01)
    out = a.out or (Path('/tmp/fastif_stest_smoke') if a.smoke else RESULTS)
    print('setting up ...', flush=True)
    info = (setup_smoke if a.smoke else setup_real)(*a.points)
    if len(info['correct']) == 0: raise SystemExit('No test points: ask for at least one with --points.')
    V = query_gradients(info['task'], info['test']).T.contiguous()
    _G.update(task=info['task'], train=info['train'], V=V)
    scale = a.scale or LiSSA(batch_size=1, damping=damping, seed=0).resolve_scale(info['task'], info['train'])
    cfg = _G['cfg'] = dict(depth=depth, checkpoints=Js, repeats=a.repeats, damping=damping, scale=scale, m=V.shape[1],
                           workers=a.workers, scale_src='given' if a.scale else 'automatic estimate with B = 1, as in speed.py')
    print(f'{info["desc"]}\nsetup {time.perf_counter() - t_start:.0f} s; m = {V.shape[1]} points, scale {scale:.4g}; probing ...', flush=True)
    cfg['probe'] = {B: probe(B) for B in Bs}
    cfg['mode'] = 'multi' if sum(q['multi'] for q in cfg['probe'].values()) <= sum(q['single'] for q in cfg['probe'].values()) else 'single'
    costs = [cfg['probe'][B][cfg['mode']] * cfg['m'] * depth * a.repeats for B in _order(Bs)]
    print('probe, CPU ms per step per test point (multi-RHS / one at a time): '
          + ', '.join(f'B={B}: {q["multi"] * 1e3:.0f} / {q["single"] * 1e3:.0f}' for B, q in cfg['probe'].items())
          + f' -> mode {cfg["mode"]}.\nEstimated grid ({len(Bs)} runs of {a.repeats}×{depth} steps, m = {cfg["m"]}): '
          f'{sum(costs) / 60:.1f} min CPU; wall ~{makespan(costs, 1) / 60:.0f} min on 1 worker, ~{makespan(costs, 2) / 60:.0f} min '
          f'on 2 (each with a free core); now using {a.workers}. Setup and probes took {time.perf_counter() - t_start:.0f} s.', flush=True)
    if a.estimate: return
    with tempfile.TemporaryDirectory(prefix='fastif_stest_') as tmp:
        cfg['tmp'] = tmp
        t0 = time.perf_counter(); runs = run_grid_rescaled(Bs, a.workers, auto=not a.scale); cfg['grid_wall'] = time.perf_counter() - t0
        rows, _ = errors(runs, cfg)
    report(rows, runs, cfg, info, out)
    print(f'wrote {out / "stest.md"} and {out / "stest.png"}; total {(time.perf_counter() - t_start) / 60:.1f} min')

if __name__ == '__main__': main()
