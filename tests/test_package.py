import importlib
from pathlib import Path

import numpy as np

import labelfree.transforms as lt
from labelfree.core.imageio import load_instance_map, load_rgb
from labelfree.sample import sample_dir, sample_pairs


def test_transforms_is_a_subpackage_not_a_top_level_module():
    assert lt.__name__ == "labelfree.transforms"
    assert Path(lt.__file__).parent.name == "transforms"


def test_every_public_transform_declares_its_backend_and_documents_its_arguments():
    """Each class a transforms module exports as a MONAI transform says which backends it honours (MONAI's contract,
    read by ``Compose`` for lazy and tensor-in/tensor-out execution) and documents its arguments."""
    from monai.transforms import Transform
    from monai.utils import TransformBackends

    checked = 0
    for path in sorted(Path(lt.__file__).parent.glob("*.py")):
        module = importlib.import_module(f"labelfree.transforms.{path.stem}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (isinstance(obj, type) and issubclass(obj, Transform)) or name != obj.__name__:
                continue  # functions, results, and the D / Dict aliases of a class checked under its own name
            checked += 1
            assert obj.backend and all(isinstance(b, TransformBackends) for b in obj.backend), name
            assert obj.__doc__ and len(obj.__doc__.strip()) > 40, name
    assert checked >= 20


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


def test_image_to_image_transforms_return_the_type_they_are_given(tile):
    """MONAI's backend contract: a transform that takes a tensor returns one (and a numpy array gives an array)."""
    import torch

    from labelfree.transforms.contour import ActiveContour
    from labelfree.transforms.instances import NucleiInstances
    from labelfree.transforms.soften import SoftenLabel
    from labelfree.transforms.voronoi import VoronoiTriLabel

    mask = (tile.instances > 0)[None]
    grey = tile.image[..., :1].transpose(2, 0, 1).astype(np.float32)
    cases = [
        (SoftenLabel(), (mask,)),
        (VoronoiTriLabel(), (tile.instances[None],)),
        (NucleiInstances(min_size=10), (mask.astype(np.float32),)),
        (ActiveContour(num_iter=2), (mask, grey)),
    ]
    for op, args in cases:
        as_array = op(*args)
        as_tensor = op(*(torch.from_numpy(np.ascontiguousarray(a)) for a in args))
        assert isinstance(as_array, np.ndarray) and isinstance(as_tensor, torch.Tensor), type(op).__name__
        assert np.array_equal(as_tensor.numpy(), as_array) and as_tensor.shape == mask.shape
