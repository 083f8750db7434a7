"""reference.preprocess and the torch transform == HF's Qwen2VLImageProcessorPil, bit for bit."""

import io

import numpy as np
import PIL.Image
import pytest
import torch

import reference
from goldenlib.cases import IMAGE_CASES, photo
from goldenlib.image_goldens import case_params
from goldenlib.hf_image import hf_preprocess, hf_processor, to_pil
from reference.io import load_image, pil_to_array
from torch_port import Qwen2_5_VLImageTransform


def assert_same(ours, hf):
    assert ours["pixel_values"].dtype == np.float32
    assert ours["image_grid_thw"].dtype == np.int64
    np.testing.assert_array_equal(ours["image_grid_thw"], hf["image_grid_thw"])
    assert ours["pixel_values"].shape == hf["pixel_values"].shape
    assert np.abs(ours["pixel_values"] - hf["pixel_values"]).max() == 0.0


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_golden_cases_match_hf(case):
    images = case.images()
    params = case_params(case)
    ours = reference.preprocess(images if len(images) > 1 else images[0], **params)
    hf = hf_preprocess(images, params["min_pixels"], params["max_pixels"])
    assert_same(ours, hf)
    assert_same(reference.fast.preprocess(images if len(images) > 1 else images[0], **params), hf)


def _random_images(seed, count):
    rng = np.random.default_rng(seed)
    photos = [photo(name) for name in ("astronaut", "chelsea", "coffee", "rocket")]
    for _ in range(count):
        source = photos[rng.integers(len(photos))]
        y0, x0 = rng.integers(0, 60, 2)
        h, w = rng.integers(8, source.shape[0] - y0), rng.integers(8, source.shape[1] - x0)
        crop = source[y0 : y0 + h, x0 : x0 + w]
        kind = rng.integers(4)
        if kind == 1:
            crop = crop[..., 1]  # gray
        elif kind == 2:
            alpha = rng.integers(0, 256, crop.shape[:2], dtype=np.uint8)
            crop = np.dstack([crop, alpha])
        yield crop, int(rng.choice([12845056, 1003520, 28 * 28 * 30, 28 * 28 * 8]))


@pytest.mark.parametrize("seed", range(4))
def test_random_crops_match_hf(seed):
    for image, max_pixels in _random_images(seed, 10):
        ours = reference.preprocess(image, max_pixels=max_pixels)
        assert_same(ours, hf_preprocess([image], 3136, max_pixels))


def test_several_images_and_trace():
    images = [photo("chelsea")[:90, :130], photo("rocket")[:50, :200, 1], np.dstack([photo("coffee")[:64, :64],
                                                                                     np.full((64, 64), 90, np.uint8)])]
    trace = {}
    ours = reference.preprocess(images, trace=trace)
    assert_same(ours, hf_preprocess(images, 3136, 12845056))
    assert len(trace["resized"]) == 3 and trace["pixel_values"] is ours["pixel_values"] or np.array_equal(
        trace["pixel_values"], ours["pixel_values"])


def test_defaults_are_the_checkpoints_not_the_class():
    big = np.random.default_rng(0).integers(0, 256, (1200, 1100, 3), dtype=np.uint8)
    ours = reference.preprocess(big)
    # 1200x1100 has 1.3 M pixels: above the class default 1003520, below the checkpoints' 12845056.
    assert_same(ours, hf_preprocess([big], 3136, 12845056))
    assert ours["image_grid_thw"].tolist() != hf_preprocess([big], 3136, 1003520)["image_grid_thw"].tolist()


def test_hf_processor_really_takes_max_pixels():
    assert hf_processor(3136, 15680).size["longest_edge"] == 15680


@pytest.mark.parametrize("mode", ["P", "PA_transparency", "LA", "CMYK", "L"])
def test_decoded_modes_match_hf(mode):
    base = PIL.Image.fromarray(photo("chelsea")[:70, :90])
    if mode == "P":
        image = base.convert("P")
    elif mode == "PA_transparency":
        image = base.convert("P")
        image.info["transparency"] = 3
    elif mode == "LA":
        image = base.convert("LA")
    else:
        image = base.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if mode != "CMYK" else "TIFF")
    buffer.seek(0)
    decoded = PIL.Image.open(buffer)
    decoded.load()
    from transformers import Qwen2VLImageProcessorPil

    hf = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056)(images=decoded, return_tensors="np")
    ours = reference.preprocess(pil_to_array(decoded))
    assert_same(ours, {k: np.asarray(v) for k, v in hf.items()})


def test_load_image_reads_committed_photo():
    image = load_image("data/photos/chelsea.png")
    assert image.dtype == np.uint8 and image.shape == (150, 226, 3)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((20, 20), np.float32), "uint8"), (np.zeros((20, 20, 2), np.uint8), "shape"),
    (np.zeros((0, 20, 3), np.uint8), "empty"), (np.zeros((3, 700, 3), np.uint8), "aspect ratio"),
])
def test_bad_input_named(bad, match):
    with pytest.raises(ValueError, match=match):
        reference.preprocess(bad)


# --- the torch transform -------------------------------------------------------------------

def _inputs(image):
    return {
        "pil": to_pil(image),
        "numpy": image,
        "tensor": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
    }


@pytest.mark.parametrize("kind", ["pil", "numpy", "tensor"])
def test_transform_matches_hf(kind):
    transform = Qwen2_5_VLImageTransform()
    for image, max_pixels in _random_images(10, 8):
        if image.ndim == 2:
            image = image[:, :, None]
        transform = Qwen2_5_VLImageTransform(max_pixels=max_pixels)
        sample = transform({"image": _inputs(image)[kind], "id": 5})
        hf = hf_preprocess([image], 3136, max_pixels)
        assert sample["id"] == 5
        assert sample["pixel_values"].dtype == torch.float32 and sample["image_grid_thw"].dtype == torch.int64
        assert_same({k: sample[k].numpy() for k in ("pixel_values", "image_grid_thw")}, hf)


@pytest.mark.parametrize("case", IMAGE_CASES[:6], ids=lambda c: c.name)
def test_transform_matches_reference_on_golden_cases(case):
    image = case.images()[0]
    transform = Qwen2_5_VLImageTransform(**case.params)
    sample = transform({"image": PIL.Image.fromarray(image)})
    ours = reference.preprocess(image, **case.params)
    np.testing.assert_array_equal(sample["pixel_values"].numpy(), ours["pixel_values"])


def test_transform_output_dtype_applied_last():
    image = photo("astronaut")[:100, :120]
    exact = Qwen2_5_VLImageTransform()({"image": image})["pixel_values"]
    bf16 = Qwen2_5_VLImageTransform(dtype=torch.bfloat16)({"image": image})["pixel_values"]
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(bf16, exact.to(torch.bfloat16))


def test_transform_bad_input_named():
    with pytest.raises(ValueError, match="uint8"):
        Qwen2_5_VLImageTransform()({"image": np.zeros((30, 30, 3), np.float64)})
    with pytest.raises(TypeError, match="image"):
        Qwen2_5_VLImageTransform()({"image": [1, 2, 3]})


class _Samples(torch.utils.data.Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform({"image": self.images[index], "index": index})


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_transform_in_dataloader_workers_starts_no_threads(backend):
    """Where torchtune runs it, in 2 DataLoader workers: the same bits as in this process, and no
    thread of its own (a pool per worker would oversubscribe the cores the workers share)."""
    import threading

    images = [PIL.Image.fromarray(photo(name)).resize((640, 480), PIL.Image.Resampling.BICUBIC)
              for name in ("chelsea", "rocket", "coffee")]  # large enough for any pool to be worth starting
    transform = Qwen2_5_VLImageTransform(backend=backend, max_pixels=28 * 28 * 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # what a main process on 2 cores has
    try:
        before = threading.active_count()
        here = [transform({"image": image}) for image in images]
        assert threading.active_count() == before
    finally:
        torch.set_num_threads(threads)
    loader = torch.utils.data.DataLoader(_Samples(images, transform), batch_size=None, num_workers=2)
    for sample in loader:
        want = here[sample["index"]]
        assert torch.equal(sample["pixel_values"], want["pixel_values"])
        assert torch.equal(sample["image_grid_thw"], want["image_grid_thw"])
