"""What tests comparing chat samples with HF's Qwen2_5_VLProcessor share: the chat template and HF's positions."""

import functools
from types import SimpleNamespace

from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

# Qwen2-VL's chat format as a Jinja template: default system prompt when the first message is not
# a system one, <|im_start|>role\n ... <|im_end|>\n, one <|image_pad|> per image part.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def hf_rope_index(*args, **kwargs):
    """HF's get_rope_index on a stub model carrying the two config values it reads (merge 2, 2 tokens/s)."""
    vision = SimpleNamespace(spatial_merge_size=2, tokens_per_second=2)
    stub = SimpleNamespace(config=SimpleNamespace(vision_config=vision),
                           get_vision_position_ids=functools.partial(Qwen2_5_VLModel.get_vision_position_ids, None))
    return Qwen2_5_VLModel.get_rope_index(stub, *args, **kwargs)[0]
