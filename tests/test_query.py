"""The text model (cbma.text, coarse_grid, text_model) and the Text2Brain metric (cbma.evaluate)."""

import warnings

import numpy as np
import pytest
import yaml
from conftest import MASK, REPO, mkda_maps

from cbma.coarse_grid import coarse_mask, downsample_maps, foci_targets, resample_masked
from cbma.errors import CbmaError
from cbma.evaluate import (
    dice_auc,
    dice_top_k,
    distance_ties,
    evaluate_held_out,
    fit_keyword_baseline,
    pearson_r,
)
from cbma.space import BrainMask, load_mask, vox_to_mm
from cbma.text import extract_terms
from cbma.text_model import DEFAULT_SMOOTHINGS, QueryModel, fit_query_model

# planted topics: a region (MNI mm) and synonyms that co-occur in the same studies
TOPICS = {
    "pain": ((40, -20, 10), ["pain", "nociception", "noxious"]),
    "wm": ((-44, 30, 30), ["working memory", "maintenance", "retention"]),
    "reward": ((12, 10, -8), ["reward", "monetary incentive", "gain"]),
    "face": ((40, -55, -18), ["face", "fusiform", "facial"]),
    "motor": ((-38, -22, 56), ["finger tapping", "motor", "movement"]),
    "lang": ((-50, 20, 8), ["language", "semantic", "verbal"]),
}
FREQUENCY = {"pain": 0.3, "wm": 0.2, "reward": 0.15, "face": 0.15, "motor": 0.1, "lang": 0.1}
# words of every abstract, unrelated to where the foci are ("memory" alone is one of
# them: "working memory" must be matched as a whole)
GENERIC = ["task", "healthy", "participants", "fmri", "activation", "memory", "brain",
           "network", "response", "regions", "cortex", "results"]
VOCABULARY = ([t for _, terms in TOPICS.values() for t in terms] + GENERIC
              + ["rare condition", "unseen disorder"])


def make_studies(n, mask, seed, sd=10.0):
    """Studies with 1 or 2 topics: foci around the topics' regions plus a few anywhere.

    Texts are abstract-like: two synonyms of each topic among three to seven generic
    words (the situation where averaging keyword maps is diluted by common words).
    """
    rng = np.random.default_rng(seed)
    names = list(FREQUENCY)
    probs = np.array(list(FREQUENCY.values()))
    inmask = vox_to_mm(np.column_stack(np.unravel_index(mask.flat_indices, mask.shape)),
                       mask.affine)
    texts, foci, topics = [], [], []
    for _ in range(n):
        chosen = rng.choice(len(names), p=probs, size=1 + (rng.random() < 0.3), replace=False)
        xyz = [inmask[rng.integers(len(inmask), size=rng.integers(0, 3))]]
        words = []
        for t in chosen:
            centre, synonyms = TOPICS[names[t]]
            xyz.append(np.asarray(centre) + rng.normal(0, sd, (rng.integers(8, 14), 3)))
            words += list(rng.choice(synonyms, size=2, replace=False))
        words += list(rng.choice(GENERIC, size=rng.integers(3, 8), replace=False))
        rng.shuffle(words)
        texts.append("The effect of " + ", ".join(words) + " in the human brain.")
        foci.append(np.vstack(xyz))
        topics.append(names[chosen[0]])
    return texts, foci, topics


@pytest.fixture(scope="module")
def mask():
    return load_mask(MASK)


@pytest.fixture(scope="module")
def studies(mask):
    texts, foci, topics = make_studies(500, mask, seed=0)
    texts[0] += " A rare condition."
    texts[1] += " A rare condition."
    return texts, foci, topics


@pytest.fixture(scope="module")
def model(studies, mask):
    texts, foci, _ = studies
    return fit_query_model(texts[:400], VOCABULARY, foci[:400], mask, n_components=8, min_df=3)


def peak_mm(model, values):
    ijk = np.unravel_index(model.coarse.flat_indices[np.argmax(values)], model.coarse.shape)
    return vox_to_mm(np.array(ijk), model.coarse.affine)[0]


# ------------------------------------------------------------------------ text


def test_extract_terms_longest_match_and_stop_words():
    vocab = ["memory", "working memory", "working", "load", "theory of mind", "mind"]
    assert extract_terms("Working memory and memory load", vocab) == {
        "working memory": 1, "memory": 1, "load": 1}
    # stop words are dropped from the text and the terms alike
    assert extract_terms("a theory of the mind", vocab) == {"theory of mind": 1}
    assert extract_terms("THE working-memory, working memory!", vocab) == {"working memory": 2}
    assert extract_terms("of the and", vocab) == {}
    # a term written without stop words matches the natural phrase (Neurosynth style)
    assert extract_terms("theory of mind", ["theory mind"]) == {"theory mind": 1}


def test_stop_words_are_scikit_learns_read_without_importing_it():
    """The rule jobs that match terms skip scikit-learn's import (most of a second)."""
    import subprocess
    import sys

    code = ("import sys; from cbma import text_model; from cbma.text import english_stop_words; "
            "words = english_stop_words(); print(len(words), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from cbma.text import english_stop_words

    assert english_stop_words() == ENGLISH_STOP_WORDS
    assert out == [str(len(ENGLISH_STOP_WORDS)), "False"]


def test_extract_terms_rejects_bad_vocabulary():
    with pytest.raises(CbmaError, match="listed twice"):
        extract_terms("pain", ["pain", "Pain"])


def test_query_errors(model):
    with pytest.raises(CbmaError, match="empty"):
        model.predict("   ")
    with pytest.raises(CbmaError, match="only stop words"):
        model.predict("the of and")
    with pytest.raises(CbmaError, match="no word is in the vocabulary.*'nociception'"):
        model.predict("nocicepton")
    with pytest.raises(CbmaError, match="must be a string"):
        model.predict(None)


def test_rare_terms_warn_but_give_a_map(model):
    with pytest.warns(UserWarning, match="rare.*'rare condition' \\(2"):
        result = model.predict("rare condition")
    assert np.all(np.isfinite(result.map))
    with pytest.warns(UserWarning, match="'unseen disorder' \\(0"):
        result = model.predict("unseen disorder")
    np.testing.assert_allclose(result.map, model.intercept)  # never seen: the average map
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict("rare condition and pain")  # one common term: no warning


# ------------------------------------------------------------------------ model


def test_map_peaks_at_the_planted_region(model):
    for phrase, topic in [("nociception", "pain"), ("working memory", "wm"),
                          ("monetary incentive", "reward"), ("fusiform face", "face"),
                          ("finger tapping", "motor"), ("verbal", "lang")]:
        peak = peak_mm(model, model.predict(phrase).map)
        distances = {t: np.linalg.norm(peak - centre) for t, (centre, _) in TOPICS.items()}
        # foci scatter 10 mm (s.d.) around the region; the regions are >= 40 mm apart
        assert distances[topic] <= 15 and min(distances, key=distances.get) == topic, (
            phrase, distances[topic])


def test_semantic_smoothing_links_synonyms(model):
    single = model.predict("nociception")
    assert single.terms == {"nociception": 1}
    assert single.weights["pain"] > 0.02 and single.weights["noxious"] > 0.02
    assert single.weights.get("reward", 0) < single.weights["pain"] / 5
    # two phrases without a common word, whose terms co-occur in the training texts
    pairs = [("nociception", "noxious pain"), ("fusiform", "face facial"),
             ("maintenance", "working memory retention")]
    synonyms = [dice_top_k(model.predict(a).map, model.predict(b).map, [20])[0]
                for a, b in pairs]
    unrelated = [dice_top_k(model.predict(a).map, model.predict(b).map, [20])[0]
                 for a, b in [("nociception", "fusiform"), ("nociception", "maintenance")]]
    assert min(synonyms) > 0.5, synonyms
    assert np.mean(synonyms) > np.mean(unrelated) + 0.05, (synonyms, unrelated)


def test_study_maps_as_targets_and_svd(studies, mask):
    texts, foci, _ = studies
    ma = mkda_maps(foci[:200], mask)
    model = fit_query_model(texts[:200], VOCABULARY, ma, mask, n_components=8, min_df=3,
                            decomposition="svd", voxel_mm=6)
    assert model.coarse.voxel_size[0] == 6
    result = model.predict("noxious")
    assert np.linalg.norm(peak_mm(model, result.map) - TOPICS["pain"][0]) <= 12
    assert result.weights["pain"] > 0


def test_closed_form_ridge_matches_sklearn():
    from sklearn.linear_model import Ridge

    box = BrainMask(np.ones((16, 16, 16), bool), np.diag([2.0, 2, 2, 1]))
    rng = np.random.default_rng(5)
    vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta theta"]
    texts = [" ".join(rng.choice(vocab, rng.integers(1, 5))) for _ in range(60)]
    foci = [rng.uniform(0, 30, (rng.integers(1, 4), 3)) for _ in range(60)]
    alphas = [0.01, 0.3, 3.0, 30.0]
    model = fit_query_model(texts, vocab, foci, box, n_components=3, smoothing=0.3,
                            alphas=alphas, min_df=1, block_size=7, screening=False)
    xs = model.smooth(model.vectorize(texts))
    y = foci_targets(foci, model.coarse).toarray()
    n, v = y.shape
    gcv = []
    for alpha in alphas:
        ridge = Ridge(alpha=alpha).fit(xs, y)
        rss = ((y - ridge.predict(xs)) ** 2).sum()
        xc = xs - xs.mean(axis=0)
        dof = 1 + np.trace(xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(len(vocab)), xc.T))
        gcv.append(rss / (n * v) / (1 - dof / n) ** 2)
        if alpha == model.alpha:
            np.testing.assert_allclose(model.coef, ridge.coef_.T, atol=1e-5)
            np.testing.assert_allclose(model.intercept, ridge.intercept_, atol=1e-5)
    np.testing.assert_allclose(model.gcv, gcv, rtol=1e-5)
    assert model.alpha == alphas[int(np.argmin(gcv))]


def test_smoothing_weight_chosen_by_gcv(studies, mask):
    texts, foci, _ = studies
    ma = mkda_maps(foci[:300], mask)
    kwargs = {"n_components": 8, "min_df": 3, "screening": False}
    chosen = fit_query_model(texts[:300], VOCABULARY, ma, mask, smoothing=[0.9, 0.1, 0.5],
                             **kwargs)
    np.testing.assert_array_equal(chosen.smoothings, [0.1, 0.5, 0.9])
    single = {w: fit_query_model(texts[:300], VOCABULARY, ma, mask, smoothing=w, **kwargs)
              for w in (0.1, 0.5, 0.9)}
    # each candidate's GCV error is that of a model fitted at that weight alone
    np.testing.assert_allclose(chosen.smoothing_gcv, [single[w].gcv.min() for w in (0.1, 0.5, 0.9)],
                               rtol=1e-6)
    best = min(single, key=lambda w: single[w].gcv.min())
    assert chosen.smoothing == best and chosen.alpha == single[best].alpha
    np.testing.assert_allclose(chosen.coef, single[best].coef, atol=1e-6)
    np.testing.assert_allclose(chosen.intercept, single[best].intercept, atol=1e-6)
    # the automatic rank is a tenth of the terms seen in training
    seen = int((chosen.df > 0).sum())
    assert chosen.components.shape[1] == 8
    auto = fit_query_model(texts[:300], VOCABULARY, ma, mask, min_df=3, smoothing=0.1)
    assert auto.components.shape[1] == max(1, seen // 10)
    for bad in (1.5, -0.1, [], [0.2, "x"], True):
        with pytest.raises(CbmaError, match="smoothing must be"):
            fit_query_model(texts[:50], VOCABULARY, ma[:50], mask, smoothing=bad)
    for bad in (0, 2.5, "many"):
        with pytest.raises(CbmaError, match="n_components must be"):
            fit_query_model(texts[:50], VOCABULARY, ma[:50], mask, n_components=bad)


def test_config_default_smoothings_are_the_library_defaults():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    settings = schema["properties"]["text_model"]["properties"]
    assert tuple(settings["smoothing"]["default"]) == DEFAULT_SMOOTHINGS
    assert settings["n_components"]["default"] == "auto"


def test_save_load_is_deterministic(model, studies, mask, tmp_path):
    model.save(tmp_path / "a.npz")
    loaded = QueryModel.load(tmp_path / "a.npz")
    loaded.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    np.testing.assert_array_equal(loaded.predict("pain").map, model.predict("pain").map)
    texts, foci, _ = studies
    again = fit_query_model(texts[:400], VOCABULARY, foci[:400], mask, n_components=8,
                            min_df=3)
    again.save(tmp_path / "c.npz")
    assert (tmp_path / "c.npz").read_bytes() == (tmp_path / "a.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CbmaError):
        QueryModel.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------------ grids


def test_grids_and_resampling(mask):
    coarse = coarse_mask(mask, 4)
    assert 27_000 < coarse.n_voxels < 30_000
    np.testing.assert_allclose(coarse.voxel_size, 4)
    # a smooth (linear) map survives the round trip fine -> coarse -> fine
    xyz = vox_to_mm(np.column_stack(np.unravel_index(mask.flat_indices, mask.shape)),
                    mask.affine)
    linear = xyz @ [0.5, -1.0, 2.0] + 3
    down = downsample_maps(linear[None], mask, coarse)[0]
    up = resample_masked(down, coarse, mask)
    assert np.corrcoef(up, linear)[0, 1] > 0.999
    assert np.median(np.abs(up - linear)) < 1.5
    assert up.shape == (mask.n_voxels,)
    with pytest.raises(CbmaError, match="at least"):
        coarse_mask(mask, 1)


def test_foci_targets_gaussian(mask):
    coarse = coarse_mask(mask, 4)
    centre = vox_to_mm(np.array([[22, 27, 20]]), coarse.affine)[0]
    targets = foci_targets([np.array([centre]), np.zeros((0, 3)),
                            np.array([centre, centre])], coarse, fwhm=9)
    assert targets.shape == (3, coarse.n_voxels)
    assert targets[1].nnz == 0
    row = targets[0].toarray().ravel()
    assert row.max() == pytest.approx(1.0)
    np.testing.assert_allclose(targets[2].toarray().ravel(), 2 * row, rtol=1e-6)
    sigma = 9 / np.sqrt(8 * np.log(2))
    neighbour = np.flatnonzero(coarse.flat_indices == np.ravel_multi_index((23, 27, 20),
                                                                            coarse.shape))
    assert row[neighbour][0] == pytest.approx(np.exp(-16 / (2 * sigma**2)), rel=1e-5)


# ------------------------------------------------------------------------ metric


def test_dice_top_k_basics():
    x = np.arange(100.0)
    np.testing.assert_allclose(dice_top_k(x, x, [5, 10, 50]), 1)
    np.testing.assert_allclose(dice_top_k(x, -x, [10, 50]), 0)
    # ties: the first voxels in order win (stable sort)
    flat = np.zeros(100)
    np.testing.assert_allclose(dice_top_k(flat, -np.arange(100.0), [10]), 1)
    # a second key for the truth's ties
    truth = np.zeros(100)
    truth[50] = 1
    assert dice_top_k(x, truth, [10])[0] == 0  # truth's top 10: voxel 50, then 0-8
    assert dice_top_k(-np.abs(x - 50), truth, [10], truth_ties=-np.abs(x - 50))[0] == 1
    curve = np.full(26, 0.4)
    assert dice_auc(curve, range(5, 31)) == pytest.approx(0.4)
    assert dice_auc(np.arange(5, 31) / 100, range(5, 31)) == pytest.approx(0.175)
    with pytest.raises(CbmaError):
        dice_top_k(x, x[:50])
    assert pearson_r(x, 2 * x + 1) == pytest.approx(1)
    assert np.isnan(pearson_r(x, np.ones(100)))


def test_dice_top_k_is_the_overlap_of_the_two_top_sets():
    """Against the definition: sets of the ceil(k n / 100) first voxels of a stable sort."""
    rng = np.random.default_rng(1)
    for n in (37, 1000):
        pred = rng.integers(0, 5, n).astype(float)  # many ties
        truth = rng.random(n)
        ks = [1, 5, 12.5, 30, 100]
        expected = []
        for k in ks:
            size = int(np.ceil(k * n / 100 - 1e-9))
            top_p = set(np.argsort(-pred, kind="stable")[:size].tolist())
            top_t = set(np.argsort(-truth, kind="stable")[:size].tolist())
            expected.append(len(top_p & top_t) / size)
        np.testing.assert_array_equal(dice_top_k(pred, truth, ks), expected)


def test_random_map_dice_is_k(mask):
    rng = np.random.default_rng(1)
    truth = np.zeros(20_000)
    truth[rng.choice(20_000, 3_000, replace=False)] = rng.random(3_000)
    truth += 0.01 * rng.random(20_000)
    ks = np.array([5, 10, 20, 30])
    curves = np.array([dice_top_k(rng.standard_normal(20_000), truth, ks) for _ in range(40)])
    np.testing.assert_allclose(curves.mean(axis=0), ks / 100, atol=0.01)


def test_distance_ties(mask):
    small = BrainMask(np.ones((5, 5, 5), bool), np.diag([2.0, 2, 2, 1]))
    truth = np.zeros(125)
    truth[62] = 1  # the centre
    ties = distance_ties(truth, small)
    assert ties[62] == 0 and ties[63] == -2 and ties.min() == pytest.approx(-np.sqrt(48))
    assert np.all(np.isneginf(distance_ties(np.zeros(125), small)))


def test_held_out_model_beats_keyword_and_random(studies, mask, tmp_path):
    texts, foci, _ = studies
    ma = mkda_maps(foci, mask)
    # trained on the same MA maps as the keyword baseline, so that the comparison is
    # about reading the text rather than about the spatial kernel
    model = fit_query_model(texts[:400], VOCABULARY, ma[:400], mask, n_components=8,
                            min_df=3)
    result = evaluate_held_out(model, texts[:400], ma[:400], texts[400:], ma[400:],
                               on="coarse", seed=0)
    s = result.summary
    diff, se = s.loc["model - keyword", "dice_auc_mean"], s.loc["model - keyword", "dice_auc_se"]
    assert diff > 3 * se and diff > 0.01, s
    for method in ("model", "keyword"):
        assert s.loc[method, "dice_auc_mean"] > s.loc["random", "dice_auc_mean"] + 0.1
    assert s.loc["random", "dice_auc_mean"] == pytest.approx(0.175, abs=0.005)
    for k in (5, 10, 20, 30):
        assert s.loc["random", f"dice_{k}_mean"] == pytest.approx(k / 100, abs=0.01)
    assert len(result.table) == 100 and (result.table["n_terms"] > 0).all()
    assert list(result.curves.index) == list(range(5, 31))
    result.figure.savefig(tmp_path / "dice.png")
    assert (tmp_path / "dice.png").stat().st_size > 1000
    again = evaluate_held_out(model, texts[:400], ma[:400], texts[400:], ma[400:],
                              on="coarse", seed=0)
    assert again.table.equals(result.table)
    # on the brain mask, a few studies: same ordering of the methods
    fine = evaluate_held_out(model, texts[:400], ma[:400], texts[400:420], ma[400:420])
    assert fine.summary.loc["model", "dice_auc_mean"] > fine.summary.loc["random",
                                                                         "dice_auc_mean"]


def test_keyword_baseline():
    maps = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]])
    baseline = fit_keyword_baseline(["pain", "reward", "pain reward"], maps,
                                    ["pain", "reward", "faces"])
    np.testing.assert_allclose(baseline.term_maps, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 0]])
    predicted = baseline.predict_maps(["pain and faces", "nothing known", "reward pain"])
    np.testing.assert_allclose(predicted, [[1, 0.5, 0], [2 / 3, 2 / 3, 0], [0.75, 0.75, 0]])


def test_screening_keeps_the_informative_terms(studies, mask):
    """In a vocabulary of mostly uninformative words, the screening drops them (NeuroQuery)."""
    texts, foci, _ = studies
    rng = np.random.default_rng(3)
    noise = [f"filler{k}" for k in range(150)]
    noisy = [t + " " + " ".join(rng.choice(noise, rng.integers(10, 30))) for t in texts]
    vocabulary = VOCABULARY + noise
    ma = mkda_maps(foci, mask)
    screened = fit_query_model(noisy[:400], vocabulary, ma[:400], mask, n_components=8,
                               min_df=3)
    kept = {str(t) for t in screened.vocabulary[np.abs(screened.coef).max(axis=1) > 0]}
    topics = {name: set(synonyms) for name, (_, synonyms) in TOPICS.items()}
    assert kept <= set().union(*topics.values()), kept
    assert all(kept & synonyms for synonyms in topics.values()), kept
    # words that say nothing of the foci leave the average map (up to the smoothing)
    effect = np.abs(screened.predict("task results filler3 filler77").effect).max()
    assert effect < 0.2 * np.abs(screened.predict("pain").effect).max()
    plain = fit_query_model(noisy[:400], vocabulary, ma[:400], mask, n_components=8, min_df=3,
                            screening=False)
    assert np.abs(plain.coef).max(axis=1).min() > 0
    scores = {name: evaluate_held_out(model, noisy[:400], ma[:400], noisy[400:], ma[400:],
                                      on="coarse").summary
              for name, model in (("screened", screened), ("plain", plain))}
    diff = {name: s.loc["model - keyword", "dice_auc_mean"] for name, s in scores.items()}
    assert diff["screened"] > diff["plain"] > 0, diff


def _definition_levels(values, sizes, secondary=None):
    """Levels by the definition: ranks of a full stable sort (value, secondary, voxel order)."""
    keys = (-values,) if secondary is None else (-secondary, -values)
    order = np.lexsort((np.arange(values.size), *keys))
    ranks = np.empty(values.size, dtype=np.int64)
    ranks[order] = np.arange(values.size)
    return np.searchsorted(sizes, ranks, side="right")


def _tied_maps(rng, n):
    """Maps with many ties (few distinct values, signed zeros, flat regions) and second keys."""
    values = rng.integers(0, rng.integers(1, 6), n).astype(float)
    kind = rng.integers(4)
    if kind == 1:
        values = rng.standard_normal(n)
    elif kind == 2:  # a keyword-like map: exactly 0 (either sign) over a large region
        values = np.where(rng.random(n) < 0.6, rng.choice([0.0, -0.0], n), rng.random(n))
    elif kind == 3:  # a binary truth, sometimes all active
        values = (rng.random(n) < rng.choice([0.01, 0.2, 1.0])).astype(float)
    secondary = -rng.integers(0, rng.integers(1, 40), n).astype(float)
    secondary[rng.random(n) < 0.05] = -np.inf
    return values, secondary


@pytest.mark.parametrize("seed", range(8))
def test_levels_equal_a_full_stable_sort(seed):
    """The evaluation's levels (no sort) are those of a full stable sort, ties and all."""
    from cbma.evaluate import _levels, _top_sizes

    rng = np.random.default_rng(seed)
    for n in (1, 2, 37, 1000, 20_000):
        for _ in range(4):
            values, secondary = _tied_maps(rng, n)
            ks = np.sort(rng.uniform(0.5, 100, rng.integers(1, 30)))
            if rng.random() < 0.5:
                ks = np.arange(5, 31)
            sizes = np.maximum(_top_sizes(ks, n), 1)  # duplicates when n is small
            for sec in (None, secondary):
                np.testing.assert_array_equal(_levels(values, sizes, sec),
                                              _definition_levels(values, sizes, sec))


def test_cuts_equal_a_full_partition():
    """The cuts found from a guess (or not, when it fails) are the k-th largest values."""
    from cbma.evaluate import _cuts

    rng = np.random.default_rng(0)
    n = 5000
    maps = [rng.standard_normal(n), rng.integers(0, 3, n).astype(float),
            (rng.random(n) < 0.05).astype(float), np.sort(rng.random(n)),  # guess too high
            np.zeros(n)]
    for values in maps:
        for counts in ([1, 10, 250], [1500, 1500, 1501], [4999, 5000], list(range(250, 1501, 50))):
            counts = np.array(counts)
            expected = np.sort(values)[::-1][counts - 1]
            for stride in (1, 4, 16):
                np.testing.assert_array_equal(_cuts(values, counts, stride), expected)


def test_dice_top_k_in_any_order_of_ks():
    rng = np.random.default_rng(2)
    pred, truth = rng.integers(0, 4, 500).astype(float), rng.random(500)
    ks = np.array([30, 5, 12.5, 5, 100])
    np.testing.assert_array_equal(dice_top_k(pred, truth, ks),
                                  [dice_top_k(pred, truth, [k])[0] for k in ks])


def _definition_distance_ties(truth, mask):
    from scipy import ndimage

    active = mask.unmask(np.asarray(truth) != 0, dtype=bool)
    if not active.any():
        return np.full(mask.n_voxels, -np.inf)
    return -mask.apply(ndimage.distance_transform_edt(~active, sampling=mask.voxel_size))


@pytest.mark.parametrize("voxel", [(2, 2, 2), (1.5, 1.5, 1.5), (2, 3, 2), (0.7, 0.7, 0.7)])
def test_distance_ties_equal_scipy_on_the_whole_volume(voxel):
    """On the mask's bounding box, and by integers on grids where that is exact: same floats."""
    rng = np.random.default_rng(0)
    for _ in range(10):
        shape = tuple(rng.integers(4, 24, 3))
        data = np.zeros(shape, bool)
        lo = [rng.integers(0, s // 2) for s in shape]
        hi = [rng.integers(start + 1, s + 1) for start, s in zip(lo, shape, strict=True)]
        data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.random() < 0.9
        data &= rng.random(shape) < 0.8  # holes and a ragged edge inside the box
        small = BrainMask(data, np.diag([*voxel, 1.0]))
        for share in (0.0, 0.002, 0.05, 0.5):
            truth = (rng.random(small.n_voxels) < share).astype(float)
            np.testing.assert_array_equal(distance_ties(truth, small),
                                          _definition_distance_ties(truth, small))
    full = load_mask(MASK)  # the brain: a few foci spread out, and one voxel
    truth = np.zeros(full.n_voxels)
    truth[rng.choice(full.n_voxels, 30, replace=False)] = 1
    np.testing.assert_array_equal(distance_ties(truth, full),
                                  _definition_distance_ties(truth, full))
    truth[:] = 0
    truth[-1] = 1
    np.testing.assert_array_equal(distance_ties(truth, full),
                                  _definition_distance_ties(truth, full))


def test_held_out_scores_equal_the_definition(studies, mask):
    """evaluate_held_out's fast path gives the table of dice_top_k on the plain maps."""
    from cbma.coarse_grid import fine_to_coarse

    texts, foci, _ = studies
    ma = mkda_maps(foci, mask)
    train, test = slice(0, 300), slice(300, 312)
    model = fit_query_model(texts[train], VOCABULARY, ma[train], mask, n_components=8,
                            min_df=3)
    ks = np.arange(5, 31)
    result = evaluate_held_out(model, texts[train], ma[train], texts[test], ma[test], seed=3)
    baseline = fit_keyword_baseline(texts[train], ma[train] @ fine_to_coarse(mask, model.coarse),
                                    model.vocabulary.tolist())
    preds = {"model": model.to_mask(model.predict_maps(texts[test])),
             "keyword": model.to_mask(baseline.predict_maps(texts[test]))}
    rng = np.random.default_rng(3)
    for i, truth in enumerate(np.asarray(ma[test].todense())):
        preds["random"] = rng.standard_normal((1, mask.n_voxels))[0]
        row = result.table.iloc[i]
        assert row["n_active"] == np.count_nonzero(truth) > 0
        ties = _definition_distance_ties(truth, mask)
        for method in ("model", "keyword", "random"):
            pred = preds[method] if method == "random" else preds[method][i]
            curve = dice_top_k(pred, truth, ks, truth_ties=ties)
            assert row[f"{method}_dice_auc"] == dice_auc(curve, ks)
            for k in (5, 10, 20, 30):
                assert row[f"{method}_dice_{k}"] == curve[k - 5]
            assert row[f"{method}_r"] == pearson_r(pred, truth)
