"""NumPy-only reference of Qwen2.5-VL's image pipeline and vision tower.

Imports numpy and the standard library only. Decoding image files (Pillow)
lives in :mod:`reference.io`, which nothing else here imports.
"""

from .bicubic import resize_bicubic
from .color import to_rgb
from .preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess
from .smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize
