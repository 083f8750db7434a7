"""Generation from a Qwen2.5-VL HF folder with an image prompt: ``tune run tune_recipes/generate.py --config ...``.

torchtune's ``dev/generate_v2`` recipe (whose config layout this follows: ``model``, ``checkpointer``,
``tokenizer``, ``prompt: {system, user: {image, text}}``, ``max_new_tokens``, ``temperature``,
``top_k``, ``seed``) cannot run this model: it collates Llama 3.2 Vision's image tiles and gives the
decoder 1-D positions, where Qwen2.5-VL needs its own patch rows and 3-axis mRoPE positions. This
recipe does the same steps with the port's parts: the checkpointer's state dict into the config's
model, the prompt through ``Qwen2_5_VLTransform`` (``inference=True``: it ends with an empty
assistant turn) and ``padded_collate_qwen2_5_vl``, then ``torch_port.generate`` with torchtune's
sampling (``temperature`` 0 is greedy) and ``rng`` seeded with ``seed``. It prints the answer, and
the new token ids on a line of their own (``generated ids: [...]``). Run from the project root::

    tune run tune_recipes/generate.py --config configs/qwen2_5_vl_3b_generation.yaml \\
        prompt.user.image=my.png prompt.user.text="What is in this image?"
"""

import time
from typing import Any, Dict, List

import torch
from omegaconf import DictConfig, OmegaConf

__all__ = ["generate_answer", "prompt_messages", "recipe_main"]


def prompt_messages(prompt: Dict[str, Any]) -> List:
    """torchtune messages for ``{"system": str | None, "user": str | {"image": path, "text": str}}``,
    ending with the empty assistant message that starts the answer."""
    from torchtune.data import Message, load_image

    unknown = sorted(set(prompt) - {"system", "user"})
    if unknown:
        raise ValueError(f"prompt has unknown keys {unknown}; expected system and user")
    if not prompt.get("user"):
        raise ValueError("prompt.user is required (a string, or {image, text})")
    messages = []
    if prompt.get("system"):
        messages.append(Message(role="system", content=str(prompt["system"])))
    user = prompt["user"]
    if isinstance(user, str):
        content = [{"type": "text", "content": user}]
    else:
        extra = sorted(set(user) - {"image", "text"})
        if extra or "text" not in user:
            raise ValueError(f"prompt.user must hold text (and optionally image), got keys {sorted(user)}")
        content = [{"type": "text", "content": str(user["text"])}]
        if user.get("image"):
            content.insert(0, {"type": "image", "content": load_image(str(user["image"]))})
    messages.append(Message(role="user", content=content))
    messages.append(Message(role="assistant", content=""))
    return messages


def generate_answer(cfg: DictConfig) -> str:
    """Load, build the prompt, generate; print and return the answer."""
    from torchtune import config, training, utils

    import torch_port

    device = utils.get_device(device=cfg.device)
    dtype = training.get_dtype(dtype=cfg.dtype, device=device)
    logger = utils.get_logger(cfg.get("log_level", "INFO"))
    state = config.instantiate(cfg.checkpointer).load_checkpoint()[training.MODEL_KEY]
    with training.set_default_dtype(dtype), device:
        model = config.instantiate(cfg.model)
    model.load_state_dict(state)
    del state
    transform = config.instantiate(cfg.tokenizer)

    messages = prompt_messages(OmegaConf.to_container(cfg.prompt, resolve=True))
    batch = torch_port.padded_collate_qwen2_5_vl([transform({"messages": messages}, inference=True)],
                                                 padding_idx=transform.pad_id)
    utils.batch_to_device(batch, device)
    rng = None
    if cfg.get("seed") is not None:
        rng = torch.Generator(device=device).manual_seed(int(cfg.seed))
    t0 = time.perf_counter()
    ids = torch_port.generate(model, batch["tokens"], encoder_input=batch["encoder_input"],
                              input_pos=batch["input_pos"], max_new_tokens=int(cfg.max_new_tokens),
                              stop_tokens=transform.stop_tokens, temperature=float(cfg.temperature),
                              top_k=cfg.get("top_k"), rng=rng)
    seconds = time.perf_counter() - t0
    new = ids[0, batch["tokens"].shape[1]:].tolist()
    answer = transform.decode(new, skip_special_tokens=True)
    logger.info(f"{len(new)} tokens in {seconds:.2f} s ({dtype}, {device})")
    print(answer, flush=True)
    print(f"generated ids: {new}", flush=True)
    return answer


def recipe_main(cfg: DictConfig) -> None:
    """The recipe (``config.parse`` exits with its return value, so this returns None)."""
    generate_answer(cfg)


def main() -> None:
    from torchtune import config

    config.parse(recipe_main)()


if __name__ == "__main__":
    main()
