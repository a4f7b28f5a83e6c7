import pytest

from ser_common.labels import FOUR_CLASSES, UnknownLabelError, class_order, label_names, map_label


@pytest.mark.parametrize("corpus,code,expected", [
    ("iemocap", "neu", "neutral"), ("iemocap", "hap", "happy"), ("iemocap", "exc", "happy"),
    ("iemocap", "sad", "sad"), ("iemocap", "ang", "angry"), ("iemocap", "fru", None), ("iemocap", "xxx", None),
    ("emodb", "F", "happy"), ("emodb", "W", "angry"), ("emodb", "L", None),
    ("ravdess", "01", "neutral"), ("ravdess", "02", None), ("ravdess", "05", "angry"),
    ("crema-d", "SAD", "sad"), ("crema-d", "DIS", None),
])
def test_four_class_maps(corpus, code, expected):
    assert map_label(corpus, code) == expected


def test_all_classes_keep_readable_names():
    assert map_label("iemocap", "exc", "all") == "excited"
    assert map_label("emodb", "L", "all") == "bored"
    assert len(label_names("ravdess", "all")) == 8
    assert label_names("emodb") == FOUR_CLASSES


def test_unknown_codes_and_corpora_are_errors():
    with pytest.raises(UnknownLabelError, match="'Q'"):
        map_label("emodb", "Q")
    with pytest.raises(ValueError, match="unknown corpus"):
        map_label("nope", "x")
    with pytest.raises(ValueError, match="scheme"):
        map_label("emodb", "F", "7class")


def test_class_order_puts_the_paper_classes_first():
    assert class_order(["sad", "calm", "angry", "neutral"]) == ("neutral", "sad", "angry", "calm")
