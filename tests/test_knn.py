"Fast checks of fastif_nb.knn: IVF vs exact search on 20k points, caching with fingerprints, recall."
import numpy as np, pytest, torch
from fastif_nb.knn import FeatureIndex, StaleIndexError, fingerprint, knn_recall, random_recall, recall_curve

def clustered(n, d=32, c=40, seed=0):
    r = np.random.default_rng(seed)
    centers = r.normal(scale=3, size=(c, d))
    return (centers[r.integers(c, size=n)] + r.normal(size=(n, d))).astype(np.float32)

@pytest.fixture(scope="module")
def data():
    X = clustered(20_000)
    Q = X[:50] + np.random.default_rng(1).normal(scale=0.3, size=(50, 32)).astype(np.float32)
    return X, Q

def brute_knn(X, Q, k):
    d2 = (Q ** 2).sum(1)[:, None] + (X ** 2).sum(1)[None] - 2 * Q @ X.T
    return np.argsort(d2, axis=1)[:, :k]

def test_flat_matches_brute_force(data):
    X, Q = data
    I = FeatureIndex.build(X, kind="flat", progress=False).search(Q, 100)[1]
    ref = brute_knn(X.astype(np.float64), Q.astype(np.float64), 100)
    # float32 vs float64 may swap near-ties at the boundary; sets must agree almost exactly
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(I, ref)]) >= 99.5

def test_ivf_recall_vs_flat(data):
    X, Q = data
    exact = FeatureIndex.build(X, kind="flat", progress=False).search(Q, 100)[1]
    ivf = FeatureIndex.build(X, kind="ivf", nprobe=16, progress=False)
    assert ivf.kind == "ivf" and 1 <= ivf.nlist <= len(X) // 39
    approx = ivf.search(Q, 100)[1]
    assert np.mean([len(np.intersect1d(a, b)) / 100 for a, b in zip(exact, approx)]) > 0.95
    full = FeatureIndex.build(X, kind="ivf", nlist=64, nprobe=64, progress=False).search(Q, 100)[1]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(exact, full)]) >= 99.5

def test_auto_kind_and_k_errors(data):
    X, _ = data
    idx = FeatureIndex.build(X[:1000], progress=False)
    assert idx.kind == "flat" and len(idx) == 1000
    with pytest.raises(ValueError, match="k=1001 but the index holds N=1000"): idx.search(X[:2], 1001)
    assert idx.search(X[:2], None)[1].shape == (2, 1000)

def test_save_load_stale_and_rebuild(tmp_path, data, capsys):
    X, Q = data
    X = X[:3000]
    fp = fingerprint(torch.arange(10), X)
    idx = FeatureIndex.build(X, kind="ivf", nlist=30, nprobe=3, fingerprint=fp, progress=False)
    idx.save(tmp_path / "i.faiss")
    back = FeatureIndex.load(tmp_path / "i.faiss", fingerprint=fp)
    assert (back.kind, back.n, back.nlist, back.nprobe) == ("ivf", 3000, 30, 3)
    for a, b in zip(back.search(Q, 20), idx.search(Q, 20)): np.testing.assert_array_equal(a, b)
    fp2 = fingerprint(torch.arange(10), X[:-1])
    assert fp2.split("-")[1] == fp.split("-")[1] and fp2 != fp
    with pytest.raises(StaleIndexError, match="part 1"): FeatureIndex.load(tmp_path / "i.faiss", fingerprint=fp2)
    new = FeatureIndex.load_or_build(tmp_path / "i.faiss", fp2, lambda: X[:-1], kind="flat", progress=False)
    assert "rebuilding" in capsys.readouterr().err and new.n == 2999
    assert FeatureIndex.load(tmp_path / "i.faiss", fingerprint=fp2).kind == "flat"

def test_recall_known_values():
    s = np.array([[3., -1, 0, 2, -5], [0, 1, 2, 3, 4]])
    np.testing.assert_allclose(knn_recall([[0, 1], [4, 3]], s, 2, "harmful"), [0.5, 1.0])
    np.testing.assert_allclose(knn_recall([[4, 0], [0, 1]], s, 2, "helpful"), [0.5, 1.0])
    assert knn_recall([4, 0], s[0], 2, "abs") == 1.0
    assert random_recall(10, 200) == 0.05
    rc = recall_curve(np.array([[4, 0, 3, 1, 2]]), s[:1], [1, 2, 5], ms=(2,))
    np.testing.assert_allclose(rc[2][:, 0], [0.5, 1.0, 1.0])

def test_index_file_replaced_under_its_sidecar(tmp_path, data, capsys):
    "The sidecar's sha256 covers the index *content*: same d and N but other vectors, or one changed byte, is stale."
    import json, shutil
    X, Q = data
    fp = fingerprint(torch.arange(10), X[:500])
    FeatureIndex.build(X[:500], kind="flat", fingerprint=fp, progress=False).save(tmp_path / "a.faiss")
    FeatureIndex.build(X[500:1000], kind="flat", fingerprint=fp, progress=False).save(tmp_path / "b.faiss")
    assert FeatureIndex.load(tmp_path / "a.faiss", fingerprint=fp).n == 500
    shutil.copy(tmp_path / "b.faiss", tmp_path / "a.faiss")            # swapped content, sidecar untouched
    with pytest.raises(StaleIndexError, match=r"index file .*a\.faiss does not match the sha256 recorded in a\.faiss\.json"):
        FeatureIndex.load(tmp_path / "a.faiss", fingerprint=fp)
    raw = bytearray((tmp_path / "b.faiss").read_bytes()); raw[-3] ^= 1; (tmp_path / "b.faiss").write_bytes(bytes(raw))
    with pytest.raises(StaleIndexError, match="does not match the sha256"): FeatureIndex.load(tmp_path / "b.faiss")
    new = FeatureIndex.load_or_build(tmp_path / "a.faiss", fp, lambda: X[:500], kind="flat", progress=False)
    assert "rebuilding the kNN index: the index file" in capsys.readouterr().err
    np.testing.assert_array_equal(new.search(Q, 5)[1], FeatureIndex.build(X[:500], kind="flat", progress=False).search(Q, 5)[1])
    side = tmp_path / "a.faiss.json"; meta = json.loads(side.read_text()); meta.pop("sha256"); side.write_text(json.dumps(meta))
    with pytest.raises(StaleIndexError, match="records no sha256 of the index file"): FeatureIndex.load(tmp_path / "a.faiss")
