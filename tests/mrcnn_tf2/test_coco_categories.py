"""The 91-class COCO layout: index == category id, the 80 names, "N/A" at the 10 unused ids."""
from mrcnn_tf2.coco_categories import COCO_CATEGORIES, UNUSED, coco_91_layout


def test_the_91_class_layout():
    names, ids = coco_91_layout()
    assert len(names) == len(ids) == 91 and ids == list(range(91))
    assert len(COCO_CATEGORIES) == 80 and names[1] == "person" and names[90] == "toothbrush"
    assert [i for i, n in enumerate(names) if n == UNUSED] == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert names[0] == "background" and len(set(names) - {UNUSED}) == 81
