import importlib
from pathlib import Path

import numpy as np

import labelfree.transforms as lt
from labelfree.core.imageio import load_instance_map, load_rgb
from labelfree.sample import sample_dir, sample_pairs

ARRAY_AND_DICT = {
    "stain": "StainSeparation",
    "fcm": "FuzzyCMeansNuclei",
    "contour": "ActiveContour",
    "soften": "SoftenLabel",
    "patches": "USMIPatchSelection",
    "voronoi": "VoronoiTriLabel",
    "instances": "NucleiInstances",
    "intensity": "MinMaxNormalize",
    "pseudolabel": "PseudoLabel",
}


def test_transforms_is_a_subpackage_not_a_top_level_module():
    assert lt.__name__ == "labelfree.transforms"
    assert Path(lt.__file__).parent.name == "transforms"


def test_every_transform_has_its_dictionary_twin_and_backend():
    for mod, name in ARRAY_AND_DICT.items():
        m = importlib.import_module(f"labelfree.transforms.{mod}")
        array_t = getattr(m, name)
        for suffix in ("d", "D", "Dict"):
            assert getattr(m, name + suffix).backend == array_t.backend
        assert array_t.__doc__


def test_sample_is_shipped_with_licence_and_labels():
    pairs = sample_pairs()
    assert 2 <= len(pairs) <= 4
    text = (sample_dir() / "ATTRIBUTION.md").read_text()
    assert "CC BY-NC-SA 4.0" in text and "Kumar" in text
    for img, lab in pairs:
        rgb, inst = load_rgb(img), load_instance_map(lab)
        assert rgb.shape == (512, 512, 3) and inst.shape == (512, 512) and inst.max() > 50
        assert img.stem in text
        assert np.array_equal(np.unique(inst), np.arange(inst.max() + 1))
