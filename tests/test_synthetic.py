"""The synthetic Neurosynth-format database: determinism, counts, and the planted signal."""

import itertools
import json
import re

import numpy as np
import pytest
from conftest import MASK

from cbma import neurosynth, space, synthetic, terms, text
from cbma.errors import CbmaError

SIZE = {"n_studies": 600, "n_foci": 12_000, "n_terms": 200}
FILES = ("database.txt", "features.txt", "abstracts.tsv", "ground_truth.json")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    truth = synthetic.make_database(out, seed=3, **SIZE)
    table, weights, meta = neurosynth.read_neurosynth(out / "database.txt", out / "features.txt")
    return out, truth, table, weights, meta


@pytest.fixture(scope="module")
def mask():
    return space.load_mask(MASK)


def study_foci(table):
    return {k: g[["x", "y", "z"]].to_numpy() for k, g in table.groupby("id", sort=False)}


def test_same_seed_same_bytes_other_seed_differs(tmp_path, made):
    out, truth, *_ = made
    again = synthetic.make_database(tmp_path / "again", seed=3, **SIZE)
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    assert again == json.loads((out / "ground_truth.json").read_text()) == truth
    synthetic.make_database(tmp_path / "other", seed=4, **SIZE)
    for name in FILES:
        assert (tmp_path / "other" / name).read_bytes() != (out / name).read_bytes(), name


def test_counts_format_and_read_back(made, mask):
    out, truth, table, weights, meta = made
    assert len(table) == SIZE["n_foci"]
    assert table["id"].nunique() == SIZE["n_studies"] == weights.matrix.shape[0]
    assert len(weights.terms) == SIZE["n_terms"] and list(weights.terms) == sorted(weights.terms)
    assert table.groupby("id").size().min() >= 1
    assert set(table["space"]) == {"MNI"} and meta.attrs["n_studies_without_features"] == 0
    assert list(weights.ids) == [f"{10_000_000 + k}-1" for k in range(SIZE["n_studies"])]
    assert (open(out / "database.txt").readline().rstrip("\n").split("\t")
            == synthetic.DATABASE_COLUMNS)
    xyz = table[["x", "y", "z"]].to_numpy()
    np.testing.assert_array_equal(xyz, np.round(xyz))
    assert mask.contains(space.mm_to_vox(xyz, mask.affine)).all()
    # every weight is written as 0 or with at most 5 significant digits
    first_row = open(out / "features.txt").readlines()[1].rstrip("\n").split("\t")[1:]
    assert all(re.fullmatch(r"0|0\.\d{1,6}|\d\.\d{0,4}", v) for v in first_row)
    assert all(meta["title"].str.len() > 10)
    assert all(meta["abstract"].str.split().str.len() > 100)
    assert meta.attrs["n_studies_with_abstract"] == SIZE["n_studies"]
    assert {t["name"] for t in truth["topics"]} == {t["name"] for t in synthetic.DEFAULT_TOPICS}


def test_default_topics_are_apart_inside_the_mask_with_a_phrase(mask):
    centres = np.array([t["centre"] for t in synthetic.DEFAULT_TOPICS])
    assert mask.contains(space.mm_to_vox(centres, mask.affine)).all()
    for a, b in itertools.combinations(centres, 2):
        assert np.linalg.norm(a - b) >= 40
    words = [t for topic in synthetic.DEFAULT_TOPICS for t in topic["terms"]]
    assert any(" " in t for t in words) and len(set(words)) == len(words)
    # each topic has a network of five regions in the mask, away from every centre
    for topic in synthetic.DEFAULT_TOPICS:
        nodes = np.array(topic["network"], dtype=float)
        assert nodes.shape == (5, 3) and mask.contains(space.mm_to_vox(nodes, mask.affine)).all()
        assert np.linalg.norm(nodes[:, None] - centres[None], axis=2).min() >= 24, topic["name"]


def test_vocabulary_is_zipf_like_and_each_study_has_background_terms(made):
    _, truth, _, weights, _ = made
    topic_terms = {t for topic in truth["topics"] for t in topic["terms"] + topic["variants"]}
    topic_terms |= set(truth["generic_terms"])
    background = [j for j, t in enumerate(weights.terms) if t not in topic_terms]
    assert all(re.fullmatch(r"[a-z]+", weights.terms[j]) for j in background)
    has = (weights.matrix[:, background] > 0).toarray()
    df = has.sum(axis=0)
    assert df.min() >= 5 and df.max() > 3 * np.median(df)
    per_study = has.sum(axis=1)
    assert per_study.min() >= 30 and per_study.max() <= 60
    values = weights.matrix[:, background].data
    assert values.min() > 0.001 and values.max() < 1


def test_abstracts_hold_exactly_the_weighted_terms(made):
    """features.txt is the tf-idf of the abstracts' terms, as the text model reads them."""
    out, truth, _, weights, meta = made
    counts = text.count_matrix(meta["abstract"].tolist(),
                               text.term_matcher(tuple(weights.terms.tolist())))
    assert ((counts > 0) != (weights.matrix > 0)).nnz == 0
    n = counts.shape[0]
    idf = np.log((1 + n) / (1 + np.asarray((counts > 0).sum(axis=0)).ravel())) + 1
    tfidf = counts.toarray() * idf
    tfidf /= np.linalg.norm(tfidf, axis=1, keepdims=True)
    np.testing.assert_allclose(weights.matrix.toarray(), tfidf, rtol=1e-4, atol=1e-5)
    # the synonyms of a topic study are mentioned more than once on average
    column = {t: j for j, t in enumerate(weights.terms)}
    pain = counts[:, column["pain"]].data
    assert pain.min() >= 1 and pain.mean() > 1.5
    rows = (open(out / "abstracts.tsv").read().splitlines())
    assert rows[0] == "id\ttitle\tabstract" and len(rows) == n + 1


def test_generic_terms_are_common_whatever_the_topic_and_variants_are_rare(made):
    _, truth, _, weights, _ = made
    column = {t: j for j, t in enumerate(weights.terms)}
    has = (weights.matrix > 0).toarray()
    topical = np.isin(weights.ids, [i for topic in truth["topics"] for i in topic["ids"]])
    generic = [column[t] for t in truth["generic_terms"]]
    assert len(generic) == len(synthetic.GENERIC_TERMS)
    df = has[:, generic].mean(axis=0)
    assert df.min() > 0.15 and df.max() > 0.75 and has[:, generic].sum(axis=1).min() > 5
    gap = np.abs(has[topical][:, generic].mean(axis=0) - has[~topical][:, generic].mean(axis=0))
    assert gap.max() < 0.15
    for topic in truth["topics"]:
        members = np.isin(weights.ids, topic["ids"])
        synonyms = has[:, [column[t] for t in topic["terms"]]].sum(axis=0)
        for variant in topic["variants"]:
            assert not has[~members, column[variant]].any()
            assert has[:, column[variant]].sum() < synonyms.min()


def test_topic_foci_concentrate_near_the_planted_centre(made):
    _, truth, table, _, _ = made
    foci = study_foci(table)
    for topic in truth["topics"]:
        members = set(topic["ids"])
        near = {k: np.linalg.norm(xyz - topic["centre_mm"], axis=1) <= 15
                for k, xyz in foci.items()}
        inside = np.concatenate([v for k, v in near.items() if k in members]).mean()
        outside = np.concatenate([v for k, v in near.items() if k not in members]).mean()
        assert inside > 0.2 and inside > 10 * outside, (topic["name"], inside, outside)


def test_topic_foci_gather_around_the_network_regions(made):
    _, truth, table, _, _ = made
    foci = study_foci(table)
    for topic in truth["topics"]:
        members = set(topic["ids"])
        nodes = np.array(topic["network_mm"])
        near = {k: np.linalg.norm(xyz[:, None] - nodes[None], axis=2).min(axis=1) <= 15
                for k, xyz in foci.items()}
        inside = np.concatenate([v for k, v in near.items() if k in members]).mean()
        outside = np.concatenate([v for k, v in near.items() if k not in members]).mean()
        # five regions share 60 % of the foci left after the centre's 40 % (36 % of all),
        # 10 mm s.d.: about a third of those fall within 15 mm of their region
        assert inside > 0.1 and inside > 3 * outside, (topic["name"], inside, outside)
        assert topic["n_network_foci"] > 0.5 * topic["n_planted_foci"]


def test_networks_move_only_foci(tmp_path, made):
    """Without networks the same seed gives the same studies, terms, texts and most foci."""
    out, truth, table, _, _ = made
    plain = synthetic.make_database(tmp_path, seed=3, network_share=0.0, **SIZE)
    for name in ("features.txt", "abstracts.tsv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    assert [t["ids"] for t in plain["topics"]] == [t["ids"] for t in truth["topics"]]
    assert all(t["n_network_foci"] == 0 for t in plain["topics"])
    other, _, _ = neurosynth.read_neurosynth(tmp_path / "database.txt", tmp_path / "features.txt")
    moved = (other[["x", "y", "z"]].to_numpy() != table[["x", "y", "z"]].to_numpy()).any(axis=1)
    assert (other["id"] == table["id"]).all()
    # every focus drawn around a network region moved (a draw may land where it was: rare)
    n_network = sum(t["n_network_foci"] for t in truth["topics"])
    assert 0.99 * n_network <= moved.sum() <= n_network


def test_synonyms_co_occur_and_unrelated_terms_do_not(made):
    _, truth, _, weights, _ = made
    column = {t: j for j, t in enumerate(weights.terms)}

    def present(term):
        return (weights.matrix[:, column[term]].toarray().ravel() > 0).astype(float)

    for topic in truth["topics"]:
        members = np.isin(weights.ids, topic["ids"])
        carried = np.column_stack([present(t) for t in topic["terms"]])
        assert (carried.any(axis=1) == members).all()   # only topic studies, at least one
        for a, b in itertools.combinations(topic["terms"], 2):
            assert np.corrcoef(present(a), present(b))[0, 1] > 0.4, (a, b)
    pairs = [(a["terms"][0], b["terms"][0])
             for a, b in itertools.combinations(truth["topics"], 2)]
    assert max(abs(np.corrcoef(present(a), present(b))[0, 1]) for a, b in pairs) < 0.2


def test_titles_carry_the_strongest_topic_term(made):
    _, truth, _, _, meta = made
    titles = dict(zip(meta["id"], meta["title"].str.lower(), strict=True))
    every = [t for topic in truth["topics"] for t in topic["terms"]]
    pattern = re.compile("|".join(rf"\b{re.escape(t)}\b" for t in every))
    members = {i for topic in truth["topics"] for i in topic["ids"]}
    assert all(pattern.search(titles[i]) for i in members)
    assert not any(pattern.search(t) for i, t in titles.items() if i not in members)


def test_a_planted_term_is_recovered_by_counting_studies(made, mask):
    """The voxel most topic studies have a focus near lies near the planted centre."""
    _, truth, table, weights, _ = made
    foci = study_foci(table)
    radius = 10.0
    steps = np.arange(-5, 6)
    offsets = np.array([o for o in itertools.product(steps, steps, steps)
                        if 2 * np.linalg.norm(o) <= radius])
    for topic in truth["topics"]:
        term = topic["terms"][0]
        chosen = terms.select(term if " " not in term else f'"{term}"', weights.for_select())
        assert set(chosen) <= set(topic["ids"]) and len(chosen) > 0.5 * len(topic["ids"])
        count = np.zeros(mask.data.size, dtype=np.int64)
        for exp in chosen:
            ijk = space.mm_to_vox(foci[exp], mask.affine)
            cells = (ijk[:, None, :] + offsets[None]).reshape(-1, 3)
            cells = cells[np.all((cells >= 0) & (cells < mask.shape), axis=1)]
            count[np.unique(np.ravel_multi_index(cells.T, mask.shape))] += 1
        count[~mask.data.ravel()] = 0
        best = space.vox_to_mm(np.unravel_index(np.argmax(count), mask.shape), mask.affine)[0]
        assert np.linalg.norm(best - topic["centre_mm"]) <= 10, (topic["name"], best)
        assert count.max() > 0.6 * len(chosen)


def test_custom_topics_mask_and_errors(tmp_path, mask):
    topics = [{"name": "a", "terms": ["alpha", "alpha wave"], "centre": [0, -40, 20]}]
    truth = synthetic.make_database(tmp_path, n_studies=50, n_foci=200, n_terms=20,
                                    topics=topics, mask=mask, p_topic=0.5, seed=1)
    assert truth["topics"][0]["terms"] == ["alpha", "alpha wave"]
    assert truth["topics"][0]["variants"] == [] and len(truth["generic_terms"]) == 4
    assert truth["mask"] == "BrainMask" and truth["n_terms"] == 20
    header = (tmp_path / "features.txt").read_text().splitlines()[0].split("\t")
    assert len(header) == 21 and "alpha wave" in header
    with pytest.raises(CbmaError, match="outside the mask"):
        synthetic.make_database(tmp_path, n_studies=5, n_foci=10, n_terms=5, mask=MASK,
                                topics=[{"name": "x", "terms": ["x"], "centre": [0, 0, 200]}])
    with pytest.raises(CbmaError, match=r"region \[0.0, 0.0, 200.0\] is outside the mask"):
        synthetic.make_database(tmp_path, n_studies=5, n_foci=10, n_terms=5, mask=MASK,
                                topics=[{"name": "x", "terms": ["x"], "centre": [0, -40, 20],
                                         "network": [[0, 0, 200]]}])
    with pytest.raises(CbmaError, match="network_share must lie"):
        synthetic.make_database(tmp_path, n_studies=5, n_foci=10, n_terms=30, network_share=2)
    with pytest.raises(CbmaError, match="fewer than the"):
        synthetic.make_database(tmp_path, n_studies=5, n_foci=10, n_terms=3)
    with pytest.raises(CbmaError, match="one focus per study"):
        synthetic.make_database(tmp_path, n_studies=5, n_foci=4, n_terms=30)


def test_command_line(tmp_path, capsys):
    assert synthetic.main([str(tmp_path), "--studies", "40", "--foci", "400", "--terms", "60",
                           "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "40 studies, 400 foci, 60 terms" in printed and "abstracts.tsv" in printed
    assert "topic 'pain'" in printed
    table, weights, _ = neurosynth.read_neurosynth(tmp_path)
    assert len(table) == 400 and weights.matrix.shape == (40, 60)
