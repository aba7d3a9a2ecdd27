from __future__ import annotations

import receiver


def test_public_surface_is_the_sorted_all_and_every_name_resolves() -> None:
    exported = list(receiver.__all__)

    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert [n for n in exported if not hasattr(receiver, n)] == []
    assert [n for n in exported if n.startswith("_")] == []
