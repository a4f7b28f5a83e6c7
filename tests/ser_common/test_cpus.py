import pytest

from ser_common.cpus import auto_workers, available_cpus, parse_workers


def test_auto_is_one_process_per_available_cpu_at_most_four():
    assert auto_workers() == max(1, min(4, available_cpus()))
    assert parse_workers("auto") == auto_workers() and parse_workers("3") == 3 and parse_workers(2) == 2
    assert parse_workers("0", minimum=0) == 0


@pytest.mark.parametrize("bad", ["two", "-1", "", "1.5"])
def test_anything_else_is_refused_with_the_rule(bad):
    with pytest.raises(ValueError, match="--workers must be 'auto' or an integer >= 1"):
        parse_workers(bad)
    with pytest.raises(ValueError, match=">= 1, got 0"):
        parse_workers("0")
