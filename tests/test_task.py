import itertools

import numpy as np
import pytest

from inpo.task import (
    FEATURE_SPACE,
    INVALID_CELL,
    PREAMBLES,
    VOCABULARY,
    Features,
    TaskConfig,
    demonstration_distribution,
    feature_cell,
    make_demonstration,
    make_prompts,
    parse_response,
    render_response,
)


def test_prompts_are_deterministic_with_stable_ids_and_lengths_in_range():
    a = make_prompts(200, seed=7, split="eval", min_items=2, max_items=4)
    assert a == make_prompts(200, seed=7, split="eval", min_items=2, max_items=4)
    assert a != make_prompts(200, seed=8, split="eval", min_items=2, max_items=4)
    assert [r["id"] for r in a[:2]] == ["eval-00000", "eval-00001"]
    assert {len(r["items"]) for r in a} == {2, 3, 4}
    for r in a:
        assert r["prompt"] == "sort " + " ".join(map(str, r["items"]))
        assert all(0 <= d <= 9 for d in r["items"])


@pytest.mark.parametrize("kwargs", [dict(n=-1), dict(n=3, min_items=0), dict(n=3, min_items=4, max_items=3)])
def test_bad_prompt_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        make_prompts(seed=0, **kwargs)


def test_vocabulary_is_small_unique_and_covers_prompts_and_responses():
    assert len(VOCABULARY) == len(set(VOCABULARY)) <= 32
    words = set(VOCABULARY)
    rng = np.random.default_rng(0)
    for r in make_prompts(100, seed=1):
        assert set(r["prompt"].split()) <= words
        assert set(make_demonstration(r["items"], rng, p_correct=0.0).split()) <= words
    for style, verbosity in itertools.product(range(3), range(4)):
        assert set(render_response([0, 5, 9], style, verbosity).split()) <= words


def test_preambles_get_strictly_longer():
    lengths = [len(p) for p in PREAMBLES]
    assert lengths[0] == 0 and all(a < b for a, b in zip(lengths, lengths[1:]))


@pytest.mark.parametrize("style,verbosity", list(itertools.product(range(3), range(4))))
def test_render_then_parse_recovers_the_features(style, verbosity):
    items = [3, 1, 3, 0]
    text = render_response(sorted(items), style, verbosity)
    assert parse_response(items, text) == Features(True, True, style, verbosity, len(text.split()))
    wrong = parse_response(items, render_response(items, style, verbosity))
    assert (wrong.valid, wrong.correct, wrong.style, wrong.verbosity) == (True, False, style, verbosity)


def test_the_styles_use_their_brackets():
    assert render_response([1, 2], 0, 0) == "( 1 2 )"
    assert render_response([1, 2], 1, 1) == "sure . [ 1 2 ]"
    assert render_response([1, 2], 2, 0) == "{ 1 2 }"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1 2 3",
        "( 1 2 3",
        "sure . (",
        "( 1 2 3 ]",
        "( 1 2 3 ) .",
        "( ( 1 2 3 )",
        "( 1 ( 2 3 )",
        "sure , ( 1 2 3 )",  # a preamble that is not one of the four
        "here it is : ( 1 2 3 )",
        "( 1 two 3 )",
        "( 1 10 3 )",
        "sort ( 1 2 3 )",
        ") 1 2 3 (",
    ],
)
def test_malformed_responses_are_invalid(text):
    f = parse_response([3, 2, 1], text)
    assert f == Features(False, False, None, None, len(text.split()))
    assert feature_cell(f) == 0 and FEATURE_SPACE[0] == INVALID_CELL


def test_correctness_needs_exactly_the_sorted_multiset():
    items = [2, 2, 1]
    assert parse_response(items, "( 1 2 2 )").correct
    for digits in ["1 2", "1 2 2 2", "2 1 2", "1 2 3", ""]:
        f = parse_response(items, f"( {digits} )")
        assert f.valid and not f.correct


def test_feature_space_is_25_distinct_cells_indexed_by_feature_cell():
    assert len(FEATURE_SPACE) == len(set(FEATURE_SPACE)) == 25
    items = [4, 0, 7]
    seen = {0}
    for correct, style, verbosity in itertools.product([False, True], range(3), range(4)):
        text = render_response(sorted(items) if correct else items, style, verbosity)
        i = feature_cell(parse_response(items, text))
        assert FEATURE_SPACE[i] == (True, correct, style, verbosity)
        seen.add(i)
    assert seen == set(range(25))


def test_imperfect_demonstrations_are_always_valid_and_incorrect():
    rng = np.random.default_rng(3)
    # all-equal and already-sorted inputs leave fewer kinds of mistakes; none may be correct
    for items in [[5, 5, 5], [1, 2, 3], [9, 0, 4, 4, 1], [0, 1]]:
        for _ in range(200):
            f = parse_response(items, make_demonstration(items, rng, p_correct=0.0))
            assert f.valid and not f.correct


def test_demonstrations_follow_their_exact_feature_distribution():
    cfg = TaskConfig()
    rng = np.random.default_rng(0)
    prompts = make_prompts(20000, seed=1)
    counts = np.zeros(len(FEATURE_SPACE))
    for r in prompts:
        text = make_demonstration(r["items"], rng, cfg.p_correct, cfg.style_probs, cfg.verbosity_probs)
        counts[feature_cell(parse_response(r["items"], text))] += 1
    pi = demonstration_distribution(cfg.p_correct, cfg.style_probs, cfg.verbosity_probs)
    assert pi.sum() == pytest.approx(1.0) and pi[0] == 0.0
    # 4 standard errors of a binomial frequency at n = 20000
    assert np.all(np.abs(counts / len(prompts) - pi) <= 4 * np.sqrt(pi * (1 - pi) / len(prompts)) + 1e-12)


def test_demonstration_defaults_leave_room_to_improve():
    cfg = TaskConfig()
    assert cfg.p_correct < 1 and cfg.style_probs[0] > 1 / 3 and np.argmax(cfg.verbosity_probs) == 0


def test_task_config_takes_lists_and_rejects_bad_probabilities():
    assert TaskConfig(style_probs=[0.2, 0.3, 0.5]).style_probs == (0.2, 0.3, 0.5)
    for bad in [dict(p_correct=1.5), dict(style_probs=(0.5, 0.5)), dict(verbosity_probs=(0.5, 0.5, 0.5, -0.5)),
                dict(style_probs=(0.2, 0.2, 0.2)), dict(min_items=6)]:
        with pytest.raises(ValueError):
            TaskConfig(**bad)
