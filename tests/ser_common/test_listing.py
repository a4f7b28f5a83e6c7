"""The one list-shortening helper reproduces, to the letter, each form the messages used before it existed."""

import pytest

from ser_common.listing import indented, shorten


@pytest.mark.parametrize("count", [0, 1, 4, 5, 6, 11])
def test_shorten_reproduces_each_inline_form(count):
    items = [f"u{i}" for i in range(count)]
    more = len(items) - 5
    assert shorten(items, 5) == ", ".join(items[:5]) + (f" … and {more} more" if more > 0 else "")
    assert shorten(items, 5, sep="; ", more="; … and {n} more") == \
        "; ".join(items[:5]) + (f"; … and {more} more" if more > 0 else "")
    assert shorten(items, 5, more=" +{n} more") == ", ".join(items[:5]) + (f" +{more} more" if more > 0 else "")
    assert shorten(items, 5, wrap=("[", "]")) == "[" + ", ".join(items[:5]) + "]" + \
        (f" … and {more} more" if more > 0 else "")
    assert shorten(items, 5, more=" … ({total} rows)") == \
        ", ".join(items[:5]) + (f" … ({count} rows)" if more > 0 else "")
    assert shorten(items, 5, more=", …") == ", ".join(items[:5]) + (", …" if more > 0 else "")


def test_shorten_takes_any_iterable_and_shows_items_with_str():
    assert shorten(range(1, 12), 8, more=" … ({total} rows)") == "1, 2, 3, 4, 5, 6, 7, 8 … (11 rows)"
    assert shorten(iter(["a", "b", "c"]), 2, more=" and {n} more") == "a, b and 1 more"
    assert shorten((), 3) == ""


@pytest.mark.parametrize("count", [0, 1, 10, 11, 25])
def test_indented_lists_one_item_a_line(count):
    items = [f"line {i}" for i in range(count)]
    rest = count - 10
    expected = "\n  " + "\n  ".join(items[:10]) + (f"\n  … and {rest} more" if rest > 0 else "")
    assert indented(items) == expected
    if count == 25:
        assert indented(items, 3) == "\n  line 0\n  line 1\n  line 2\n  … and 22 more"
