"""--val-split's draw (mrcnn_tf2.data.val_split): disjoint, reproducible, at least one image on each side."""
import pytest

from mrcnn_tf2.data.val_split import draw


def test_the_draw_is_seeded_disjoint_and_never_empty():
    ids = list(range(100, 120))
    held = draw(ids, 0.1, seed=0)
    assert len(held) == 2 and held <= set(ids) and held == draw(reversed(ids), 0.1, seed=0)
    assert held != draw(ids, 0.1, seed=1)
    assert len(draw(ids, 0.001, 0)) == 1 and len(draw(ids, 0.999, 0)) == 19
    with pytest.raises(ValueError, match="at least 2 annotated images"):
        draw([7], 0.5, 0)
