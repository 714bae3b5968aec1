"""The ``hf`` backend: any local transformers image-text-to-text checkpoint (extra ``genex[hf]``).

The model is prompted with :func:`~genex.policy.prompting.build_json_prompt`
(all frames of the decision as images of one chat message) and greedy-decoded;
the reply is parsed by :func:`~genex.policy.prompting.parse_json_answer`, so
malformed output becomes uniform answers with a note in ``trace["parse_notes"]``,
never an exception. ``transformers`` is imported only when an ``HFPolicy`` is built.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genex.policy.prompting import build_json_prompt, parse_json_answer
from genex.policy.protocol import PolicyResponse, TaggedImage, aggregate, validate_images, validate_questions

__all__ = ["HFPolicy"]

log = logging.getLogger(__name__)


class HFPolicy:
    """A :class:`~genex.policy.protocol.Policy` over a local Hugging Face vision-language model.

    Args:
        model_path: a folder with ``config.json``, weights and processor files (``save_pretrained``
            output). Nothing is downloaded (``local_files_only``).
        device: torch device; max_new_tokens: generation budget for the JSON answer.
    """

    name = "hf"

    def __init__(self, model_path: str | Path, device: str = "cpu", max_new_tokens: int = 256,
                 torch_dtype: Any = None) -> None:
        try:
            import transformers
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError("the hf policy backend needs transformers: pip install 'genex[hf]'") from e
        path = Path(model_path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a local transformers checkpoint (no config.json); pass the "
                                    "folder written by save_pretrained")
        self.model_path = str(path)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
        kwargs = {"local_files_only": True}
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype
        self.model = transformers.AutoModelForImageTextToText.from_pretrained(path, **kwargs).to(device).eval()

    def _chat_text(self, text: str, n_images: int) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        token = getattr(self.processor, "image_token", "<image>")
        return token * n_images + "\n" + text

    def answer(self, images: Sequence[TaggedImage], prompt: str, questions: Sequence[Any],
               actions: Sequence[str] = ()) -> PolicyResponse:
        import torch
        from PIL import Image

        validate_images(images)
        validate_questions(questions)
        text = self._chat_text(build_json_prompt(prompt, questions, images, actions), len(images))
        pil = [Image.fromarray(im.image) for im in images]
        t0 = time.perf_counter()
        inputs = self.processor(images=pil, text=text, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        reply = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        per_image, action, rationale, notes = parse_json_answer(reply, questions, len(images), actions)
        imagined = np.array([im.imagined for im in images], dtype=bool)
        probs = {qid: aggregate(p, imagined) for qid, p in per_image.items()}
        trace = {"backend": "hf", "model": self.model_path, "latency_s": round(time.perf_counter() - t0, 4),
                 "new_tokens": int(out.shape[1] - inputs["input_ids"].shape[1]), "parse_notes": notes,
                 "raw": reply[:2000]}
        return PolicyResponse(probs, per_image, imagined, action=action, rationale=rationale, trace=trace)
