"""HF's own Qwen2-VL image-processor tests, in our API; and checkpoint folders read as HF's Auto classes read them.

HF's tests/models/qwen2_vl/test_image_processing_qwen2_vl.py (the version with ``image_processor_list``
and ``test_video_inputs``, the closest stored to 5.24) holds these tests; each one about numbers,
shapes, options or formats runs here on the reference (``reference.preprocess`` /
``reference.preprocess_video``) and the port (``Qwen2_5_VLImageTransform`` / ``Qwen2_5_VLVideoTransform``),
on both backends, with the expected values computed by the installed HF (bit for bit, not only shapes):

* test_select_best_resolution        -> test_select_best_resolution (smart_resize(561, 278))
* test_call_pil / _numpy / _pytorch  -> test_call_formats (one image as [image], then the batch of 7), plus
                                        its channels-first variant (NumPy [3, H, W], inferred as HF does)
* test_nested_input                  -> test_nested_input (a list and a nested list: the same values)
* test_call_numpy_4_channels         -> test_four_channels (HF skips it: its two backends blend RGBA
                                        differently; here PIL and NumPy RGBA, each backend against its class)
* test_video_inputs                  -> test_video_inputs (1..6 frames; through HF's video processor:
                                        in 5.24 the image processor takes no videos)
* test_custom_patch_size             -> test_custom_patch_size_video (HF builds the processor with patch 14
                                        whatever the tester's patch_size, so its expectation never varies;
                                        here the patch size really varies, on both sides)
* test_slow_fast_equivalence         -> test_backends_each_exact (each backend exact with its HF class;
                                        HF only asks atol 1e-2 between the two)

Not expressible, being about HF's objects rather than numbers: test_image_processor_properties
(attributes of the processor object; the port's transform keeps min_pixels/max_pixels/patch sizes as
attributes, the reference is a function), test_image_processor_from_dict_with_kwargs and the mixin's
to_json / save_pretrained / from_pretrained / init_without_params / cast_dtype tests (HF's serialization
API; our loaders read HF's files instead: the checkpoint tests below).
HF's resolution (equal resolution 1024, HF's literal (34300, 1176)) runs in the slow PIL-input variants;
the other formats use 150.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import reference
from checkpoint_folder import PREPROCESSOR_JSON, VISION_CONFIG_JSON, write_checkpoint
from torch_port import Qwen2_5_VLImageTransform, Qwen2_5_VLVideoTransform, load_hf_checkpoint, load_hf_video_transform

BACKENDS = ("pil", "torchvision")
TESTER = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}  # HF's Qwen2VLImageProcessingTester dict
PHOTOS = Path(__file__).resolve().parent.parent / "data" / "photos"


def hf_image_processor(backend, **kwargs):
    from transformers import Qwen2VLImageProcessor, Qwen2VLImageProcessorPil

    cls = Qwen2VLImageProcessorPil if backend == "pil" else Qwen2VLImageProcessor
    return cls(**{**TESTER, **kwargs})


def run_hf(processor, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return processor(*args, return_tensors="np", **kwargs)


def as_np(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_exact(ours, theirs, keys=("pixel_values", "image_grid_thw")):
    for key in keys:
        got, want = as_np(ours[key]), as_np(theirs[key])
        assert got.shape == want.shape and got.dtype == want.dtype, (key, got.shape, want.shape, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want, err_msg=key)


def hf_like_images(batch, resolution, kind, seed=0, channels=3):
    """HF's prepare_image_inputs(equal_resolution=True): random uint8 images, as PIL, NumPy HWC, NumPy CHW
    (``numpy_chw``: HF's numpy_4_channels tester layout) or torch CHW."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (resolution, resolution, channels), dtype=np.uint8) for _ in range(batch)]
    if kind == "pil":
        return [PIL.Image.fromarray(a) for a in arrays]
    if kind == "torch":
        return [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrays]
    if kind == "numpy_chw":
        return [np.ascontiguousarray(a.transpose(2, 0, 1)) for a in arrays]
    return arrays


def flat(images):
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in flat(item)]
    return [images]


def ours(backend, images, *, plain=True, **kwargs):
    """(reference, fast reference, port per image, port on the whole input) for the same images and
    settings. One image per sample is torchtune's usual convention (a batch is its samples' rows
    concatenated); a sample may also hold HF's whole input (a list, nested list or batch)."""
    options = {**TESTER, **kwargs}
    port = Qwen2_5_VLImageTransform(backend=backend, **options)
    samples = [port({"image": image}) for image in flat(images)]
    batched = {key: torch.cat([sample[key] for sample in samples]) for key in ("pixel_values", "image_grid_thw")}
    plain_form = reference.preprocess(images, backend=backend, **options) if plain else None
    return (plain_form, reference.fast.preprocess(images, backend=backend, **options), batched,
            port({"image": images}))


def test_select_best_resolution():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    from torch_port._smart_resize import smart_resize as port_smart_resize

    want = tuple(hf_smart_resize(561, 278, factor=28))
    assert reference.smart_resize(561, 278, 28) == want == tuple(port_smart_resize(561, 278, 28))


CALLS = [(backend, kind, 150) for backend in BACKENDS for kind in ("pil", "numpy", "numpy_chw", "torch")]
CALLS += [pytest.param(backend, "pil", 1024, marks=pytest.mark.slow) for backend in BACKENDS]  # HF's own sizes


@pytest.mark.parametrize("backend,kind,resolution", CALLS)
def test_call_formats(backend, kind, resolution):
    images = [[image] for image in hf_like_images(7, resolution, kind)]  # HF's tester nests each image
    processor = hf_image_processor(backend)
    for given in (images[0], images):  # "not batched", then "batched"
        want = run_hf(processor, given)
        impls = ours(backend, given, plain=resolution != 1024)
        # At HF's 1024 the plain reference (per-tap loops) would take most of the suite's image time; the fast
        # form it is bit-equal to (tests/test_fast_paths.py) and the port stand for it there.
        for got in impls[1:] if resolution == 1024 else impls:
            assert_exact(got, want)
    if resolution == 1024:  # HF's literal expectations hold for HF's sizes
        assert want["pixel_values"].shape == (34300, 1176)
        assert (want["image_grid_thw"] == [[1, 70, 70]] * 7).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_input(backend):
    images = hf_like_images(7, 120, "pil", seed=1)
    processor = hf_image_processor(backend)
    flat, nested = run_hf(processor, images), run_hf(processor, [images[:3], images[3:]])
    assert_exact(nested, flat)  # HF: the same values whatever the nesting
    for given in (images, [images[:3], images[3:]]):
        for got in ours(backend, given):
            assert_exact(got, flat)


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_channels(backend):
    rgba = hf_like_images(2, 90, "numpy", seed=2, channels=4)
    processor = hf_image_processor(backend)
    given = [PIL.Image.fromarray(a) for a in rgba]
    for got in ours(backend, given):
        assert_exact(got, run_hf(processor, given))
    for layout in (rgba, [np.ascontiguousarray(a.transpose(2, 0, 1)) for a in rgba]):  # NumPy RGBA, HWC and CHW
        for got in ours(backend, layout):  # the PIL backend blends in float64, the torchvision one in float32
            assert_exact(got, run_hf(processor, layout))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_each_exact(backend):
    image = PIL.Image.open(PHOTOS / "rocket.png").convert("RGB")
    for got in ours(backend, image):
        assert_exact(got, run_hf(hf_image_processor(backend), image))


# ---------------------------------------------------------------- HF's video cases


def hf_video(videos, **kwargs):
    from transformers import Qwen2VLVideoProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Qwen2VLVideoProcessor(**kwargs)(videos=videos, return_tensors="np")


def video_ours(video, **kwargs):
    return (reference.preprocess_video([video], **kwargs),
            Qwen2_5_VLVideoTransform(**kwargs)({"video": video}))


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 6])
def test_video_inputs(frames):
    video = np.random.default_rng(frames).integers(0, 256, (frames, 84, 112, 3), dtype=np.uint8)
    want = hf_video([video], **TESTER)
    assert want["pixel_values_videos"].shape[0] == -(-frames // 2) * (84 // 14) * (112 // 14)  # HF's rule
    for got in video_ours(video, **TESTER):
        assert_exact(got, want, keys=("pixel_values_videos", "video_grid_thw"))


@pytest.mark.parametrize("patch_size", [1, 3, 5, 7])
def test_custom_patch_size_video(patch_size):
    video = np.random.default_rng(patch_size).integers(0, 256, (5, 60, 45, 3), dtype=np.uint8)
    kwargs = {"min_pixels": 4 * patch_size ** 2, "max_pixels": 20000, "patch_size": patch_size}
    want = hf_video([video], **kwargs)
    for got in video_ours(video, **kwargs):
        assert_exact(got, want, keys=("pixel_values_videos", "video_grid_thw"))


# ---------------------------------------------------------------- checkpoint folders, as HF's Auto classes read them

TYPES = ["Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil", "Qwen2VLImageProcessorFast", None]


def folder_with(tmp_path, preprocessor, video=None):
    write_checkpoint(tmp_path, {}, preprocessor=preprocessor, shards=1)
    if video is not None:
        (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(video))
    return tmp_path


def transform_of(folder, backend=None):
    """load_hf_checkpoint's transform (the weights are not needed to test it: a folder without them fails later)."""
    from torch_port._hf_files import read_json as _read_json
    from torch_port._hf_processor import default_backend, image_transform_kwargs as _transform_kwargs

    kwargs = _transform_kwargs(_read_json(folder / "preprocessor_config.json"))
    return Qwen2_5_VLImageTransform(backend=backend or default_backend(), **kwargs)


@pytest.mark.parametrize("kind", TYPES)
def test_checkpoint_default_backend_is_autoimageprocessors(tmp_path, kind):
    """HF 5.24 builds the torchvision Qwen2VLImageProcessor for every one of these names (torchvision
    installed): the ...Pil name does not select the PIL backend."""
    from transformers import AutoImageProcessor

    preprocessor = {k: v for k, v in PREPROCESSOR_JSON.items() if k != "image_processor_type"}
    if kind is not None:
        preprocessor["image_processor_type"] = kind
    folder = folder_with(tmp_path, preprocessor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = AutoImageProcessor.from_pretrained(folder)
    assert type(auto).__name__ == "Qwen2VLImageProcessor"
    image = np.random.default_rng(4).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    transform = transform_of(folder)
    assert transform.backend == "torchvision"
    assert_exact(transform({"image": image}), run_hf(auto, image))


def test_load_hf_checkpoint_backends(tmp_path):
    """The loader itself: None follows HF, an explicit backend overrides (vs that backend's HF class)."""
    from transformers import AutoImageProcessor

    weights = reference.random_weights(reference.VisionConfig.from_hf(VISION_CONFIG_JSON), seed=3)
    write_checkpoint(tmp_path, weights, preprocessor={**PREPROCESSOR_JSON, "image_processor_type":
                                                      "Qwen2VLImageProcessorPil"})
    image = np.random.default_rng(5).integers(0, 256, (90, 60, 3), dtype=np.uint8)
    for backend, use in ((None, None), ("pil", "pil"), ("torchvision", "torchvision")):
        _, transform = load_hf_checkpoint(tmp_path, dtype=torch.float32, backend=backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auto = AutoImageProcessor.from_pretrained(tmp_path, **({} if use is None else {"backend": use}))
        assert transform.backend == (use or "torchvision")
        assert_exact(transform({"image": image}), run_hf(auto, image))
    with pytest.raises(ValueError, match="backend must be None or one of .*'cv2'"):
        load_hf_checkpoint(tmp_path, backend="cv2")


VIDEO_CONFIGS = {
    "video_file": {"size": {"shortest_edge": 3136, "longest_edge": 40000}, "temporal_patch_size": 2,
                   "video_processor_type": "Qwen2VLVideoProcessor"},
    "pixels_override_size": {"min_pixels": 6272, "max_pixels": 30000, "size": {"shortest_edge": 1, "longest_edge": 9}},
    "sampled_by_fps": {"do_sample_frames": True, "fps": 2, "min_frames": 2, "max_frames": 8,
                       "size": {"shortest_edge": 3136, "longest_edge": 30000}},
    "num_frames": {"do_sample_frames": True, "num_frames": 4, "image_mean": [0.5, 0.4, 0.3],
                   "image_std": [0.2, 0.3, 0.4], "do_resize": True, "resample": 3, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True},
    "capped_frames": {"cap_pixels_per_frame": True, "max_video_tokens": 40, "size": {"shortest_edge": 3136,
                                                                                    "longest_edge": 60000}},
    "image_file_only": None,  # no video file: HF reads preprocessor_config.json (min/max pixels 3136/12845056)
}


@pytest.mark.parametrize("name", list(VIDEO_CONFIGS))
def test_load_hf_video_transform_matches_autovideoprocessor(tmp_path, name):
    from transformers import AutoVideoProcessor

    folder = folder_with(tmp_path, PREPROCESSOR_JSON, VIDEO_CONFIGS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = AutoVideoProcessor.from_pretrained(folder)
    transform = load_hf_video_transform(folder)
    assert isinstance(transform, Qwen2_5_VLVideoTransform)
    video = np.random.default_rng(6).integers(0, 256, (9, 64, 90, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = auto(videos=[video], return_tensors="np",
                    **({"video_metadata": [{"fps": 6.0, "total_num_frames": 9}]} if name == "sampled_by_fps" else {}))
    got = transform({"video": video, **({"video_fps": 6.0} if name == "sampled_by_fps" else {})})
    assert_exact(got, want, keys=("pixel_values_videos", "video_grid_thw"))
    if name == "image_file_only":
        assert (transform.min_pixels, transform.max_pixels) == (auto.size["shortest_edge"], auto.size["longest_edge"])
