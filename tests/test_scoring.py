from distillery.labeling.scoring import tier_of, weighted_score


def test_weighted_score(filt):
    assert weighted_score({"relevance": 8, "groundedness": 6, "style": 5}, filt) == 8 * 0.5 + 6 * 0.3 + 5 * 0.2


def test_gatekeeper_caps_an_off_topic_answer(filt):
    # Polished but off-topic: the weighted mean would be 5.5, the gatekeeper caps it at 2.
    assert weighted_score({"relevance": 1, "groundedness": 10, "style": 10}, filt) == 2.0


def test_tiers_from_score(filt):
    assert tier_of(7.0, filt) == "high"
    assert tier_of(6.99, filt) == "medium"
    assert tier_of(0.5, filt) == "low"
