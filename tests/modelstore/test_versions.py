from __future__ import annotations

import pytest

from modelstore.errors import InvalidName
from modelstore.versions import check_name, sort_versions


def test_versions_sort_as_versions_not_strings():
    assert sort_versions(["v1.10.0", "v1.2.0", "v1.2.0-rc.2", "v1.2.0-rc.10", "v0.9.9", "v2.0.0"]) == [
        "v0.9.9", "v1.2.0-rc.2", "v1.2.0-rc.10", "v1.2.0", "v1.10.0", "v2.0.0"]


@pytest.mark.parametrize("bad", ["../etc", "Model", "", "a/b", "-x"])
def test_bad_names_are_refused(bad):
    with pytest.raises(InvalidName):
        check_name(bad)
