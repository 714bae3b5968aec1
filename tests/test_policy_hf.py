"""The hf backend on a tiny Llava-style model built from a config in a temp dir (no download)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from genex.policy import HFPolicy, PolicyInputError, PolicyQuestion, TaggedImage  # noqa: E402

torch.set_num_threads(1)

QUESTIONS = (PolicyQuestion("ped", "Is a pedestrian visible?", ("yes", "no")),)


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as ImageProcessor

    path = tmp_path_factory.mktemp("tiny-llava")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "<image>": 4}
    for c in map(chr, range(32, 127)):
        vocab.setdefault(c, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>",
                                        extra_special_tokens={"image_token": "<image>"})
    template = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
                "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}")
    processor = LlavaProcessor(image_processor=ImageProcessor(size={"shortest_edge": 32},
                                                              crop_size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               chat_template=template, image_token="<image>", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8192,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2),
        image_token_index=4, vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def frames():
    return [TaggedImage(np.zeros((64, 64, 3), np.uint8), step=0),
            TaggedImage(np.full((48, 48, 3), 200, np.uint8), step=1, imagined=True)]


def test_random_model_output_is_a_recorded_fallback_not_a_crash(tiny_hf_model):
    policy = HFPolicy(tiny_hf_model, max_new_tokens=12)
    r = policy.answer(frames(), "Drive past the crosswalk", QUESTIONS)
    np.testing.assert_allclose(r.per_image["ped"], 0.5)
    assert r.trace["backend"] == "hf" and r.trace["parse_notes"][0].startswith("fallback")
    assert r.imagined.tolist() == [False, True]


def test_json_reply_is_parsed(tiny_hf_model, monkeypatch):
    policy = HFPolicy(tiny_hf_model, max_new_tokens=12)
    reply = json.dumps({"images": [{"ped": {"yes": 0.9, "no": 0.1}}, {"ped": "no"}], "action": "brake",
                        "rationale": "someone is there"})
    reply_ids = torch.tensor([policy.processor.tokenizer(reply, add_special_tokens=False).input_ids])

    def fake_generate(input_ids, **kwargs):
        return torch.cat([input_ids, reply_ids], dim=1)

    monkeypatch.setattr(policy.model, "generate", fake_generate)
    r = policy.answer(frames(), "Drive", QUESTIONS, actions=("go", "brake"))
    np.testing.assert_allclose(r.per_image["ped"], [[0.9, 0.1], [0.0, 1.0]])
    np.testing.assert_allclose(r.probs["ped"], [0.9, 0.1])  # the real frame's answer
    assert r.action == 1 and r.rationale == "someone is there" and r.trace["parse_notes"] == []


def test_bad_inputs(tiny_hf_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        HFPolicy(tmp_path)
    policy = HFPolicy(tiny_hf_model, max_new_tokens=4)
    with pytest.raises(PolicyInputError, match="uint8"):
        policy.answer([TaggedImage(np.zeros((8, 8, 3)))], "x", QUESTIONS)
