"""Tiny VLM policy: model stages, reducer modes, prefix cache, batching, history, checkpoints, bad input."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from genex.policy import (CheckpointError, PolicyInputError, PolicyQuestion, TaggedImage, TinyPolicy,
                          TinyVLM, TinyVLMConfig, TokenizerMismatchError, UnknownAnswerError, WordTokenizer,
                          load_tiny_vlm, save_tiny_vlm)
from genex.policy.data import format_prompt, load_examples
from genex.policy.train import TrainConfig, evaluate, train_policy

torch.set_num_threads(1)

QUESTIONS = (PolicyQuestion("red", "Is a red square visible?", ("yes", "no")),
             PolicyQuestion("blue", "Is a blue square visible?", ("yes", "no")))


def tiny_model(seed: int = 0, **kw) -> tuple[TinyVLM, WordTokenizer]:
    tok = WordTokenizer.build(["Drive safely <sep> Is a red square visible? Is a blue square visible? yes no"])
    torch.manual_seed(seed)
    cfg = TinyVLMConfig(image_size=16, patch_size=4, dim=32, heads=4, vision_layers=1, fusion_layers=2,
                        vocab_size=len(tok), tokenizer_fingerprint=tok.fingerprint, packer_queries=8,
                        reducer_k=4, **kw)
    return TinyVLM(cfg), tok


def frames(n: int, seed: int = 0, size: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def images(n: int, seed: int = 0, imagined: bool = False, size: int = 16) -> list[TaggedImage]:
    return [TaggedImage(f, step=i, imagined=imagined, sample=i) for i, f in enumerate(frames(n, seed, size))]


def test_tokenizer_roundtrip_and_fingerprint(tmp_path):
    tok = WordTokenizer.build(["Is the text 'letter_23.txt' on screen?"])
    assert tok.split("letter_23.txt") == ["letter", "_", "2", "3", ".", "txt"]
    assert tok.encode("Unseen word")[0] == tok.unk_id
    tok.save(tmp_path / "t.json")
    again = WordTokenizer.load(tmp_path / "t.json")
    assert again.vocab == tok.vocab and again.fingerprint == tok.fingerprint
    data = json.loads((tmp_path / "t.json").read_text())
    data["vocab"].append("extra")
    (tmp_path / "t.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="corrupt"):
        WordTokenizer.load(tmp_path / "t.json")


@pytest.mark.parametrize("mode,k,expected", [("none", 0, 17), ("cls", 4, 5), ("packer", 4, 5), ("cls", 1, 2),
                                             ("packer", 8, 9), ("cls", 99, 17)])
def test_reducer_modes_token_counts(mode, k, expected):
    model, _ = tiny_model()
    x = torch.from_numpy(np.stack(frames(3)))
    assert model.encode_images(x, mode, k).shape == (3, expected, 32)


def test_reducer_can_drop_cls_for_ablation():
    model, _ = tiny_model()
    x = torch.from_numpy(np.stack(frames(2)))
    full = model.encode_images(x, "cls", 4)
    torch.testing.assert_close(model.encode_images(x, "cls", 4, keep_cls=False), full[:, 1:])
    assert model.encode_images(x, "none", 0, keep_cls=False).shape == (2, 16, 32)


def test_cls_reducer_keeps_most_cls_similar_tokens():
    model, _ = tiny_model()
    tokens = model.vision(torch.from_numpy(np.stack(frames(2))))
    kept = model.reducer(tokens, "cls", 3)
    sim = torch.nn.functional.cosine_similarity(tokens[:, 1:], tokens[:, :1], dim=-1)
    top = sim.topk(3, dim=1).indices.sort(dim=1).values
    torch.testing.assert_close(kept[:, 1:], tokens[:, 1:].gather(1, top[..., None].expand(-1, -1, 32)))
    with pytest.raises(ValueError, match="queries"):
        model.reducer(tokens, "packer", 9)
    with pytest.raises(ValueError, match="unknown reducer"):
        model.reducer(tokens, "bogus", 3)


def test_prompt_tokens_do_not_see_the_image():
    """The prefix mask makes prompt keys/values image-independent: that is what makes caching exact."""
    model, tok = tiny_model()
    from genex.policy.checkpoint import encode_texts

    ids = encode_texts(tok, [format_prompt("Drive safely", q.text) for q in QUESTIONS], 48)
    a, b = model.encode_prompts(ids), model.encode_prompts(ids)
    for k1, k2 in zip(a.keys, b.keys):
        torch.testing.assert_close(k1, k2)


def test_prefix_cache_and_batching_do_not_change_answers():
    model, tok = tiny_model()
    ims = images(3) + images(2, seed=1, imagined=True)
    ref = TinyPolicy(model, tok, prefix_cache=False, batch_frames=False, history_size=0)
    fast = TinyPolicy(model, tok, prefix_cache=True, batch_frames=True)
    r0 = ref.answer(ims, "Drive safely", QUESTIONS)
    for _ in range(2):
        r1 = fast.answer(ims, "Drive safely", QUESTIONS)
        for q in QUESTIONS:
            np.testing.assert_allclose(r1.per_image[q.id], r0.per_image[q.id], atol=1e-5)
    assert fast.stats["prompt_hits"] == 2 and fast.stats["prompt_misses"] == 2
    assert fast.stats["history_hits"] == 3  # the real frames were not re-encoded
    assert fast.stats["frames_encoded"] == 5 + 2  # imagined frames are never cached


def test_response_shapes_and_aggregation():
    model, tok = tiny_model()
    policy = TinyPolicy(model, tok)
    ims = images(2) + images(3, seed=2, imagined=True)
    r = policy.answer(ims, "Drive safely", QUESTIONS)
    for q in QUESTIONS:
        assert r.per_image[q.id].shape == (5, 2)
        np.testing.assert_allclose(r.per_image[q.id].sum(1), 1.0, atol=1e-6)
        np.testing.assert_allclose(r.probs[q.id], r.per_image[q.id][:2].mean(0), atol=1e-6)
    assert r.imagined.tolist() == [False, False, True, True, True]
    assert r.action is None and r.trace["backend"] == "tiny"
    # imagined-only: the mean of all rows
    r = policy.answer(images(2, imagined=True), "Drive safely", QUESTIONS)
    np.testing.assert_allclose(r.probs["red"], r.per_image["red"].mean(0), atol=1e-6)


def test_history_is_kept_as_tokens_and_bounded():
    model, tok = tiny_model()
    policy = TinyPolicy(model, tok, history_size=2)
    for i, f in enumerate(frames(3, seed=5)):
        policy.answer([TaggedImage(f, step=i)], "Drive safely", QUESTIONS)
    assert len(policy._history) == 2
    assert all(isinstance(t, torch.Tensor) and t.shape == (17, 32) and screens is None  # no glimpses, no screens
               for _, t, screens in policy._history.values())
    r = policy.answer([TaggedImage(frames(1, seed=9)[0], step=3)], "Drive safely", QUESTIONS, use_history=True)
    assert r.per_image["red"].shape == (2, 2) and r.trace["history_rows"] == 1  # the newest frame evicted the oldest
    policy.reset()
    assert not policy._history


def test_reduced_policy_answers():
    model, tok = tiny_model()
    for mode in ("cls", "packer"):
        r = TinyPolicy(model, tok, reducer=mode, k=2).answer(images(2), "Drive safely", QUESTIONS)
        assert r.per_image["red"].shape == (2, 2)


def test_bad_images_are_clear_errors():
    model, tok = tiny_model()
    policy = TinyPolicy(model, tok)
    good = frames(1)[0]
    with pytest.raises(PolicyInputError, match="uint8"):
        policy.answer([TaggedImage(good.astype(np.float32) / 255)], "x", QUESTIONS)
    with pytest.raises(PolicyInputError, match="takes 16x16"):
        policy.answer([TaggedImage(frames(1, size=32)[0])], "x", QUESTIONS)
    with pytest.raises(PolicyInputError, match=r"\[H, W, 3\]"):
        policy.answer([TaggedImage(good[..., 0])], "x", QUESTIONS)
    with pytest.raises(PolicyInputError, match="no images"):
        policy.answer([], "x", QUESTIONS)
    with pytest.raises(PolicyInputError, match="TaggedImage"):
        policy.answer([good], "x", QUESTIONS)
    resized = TinyPolicy(model, tok, resize=True).answer([TaggedImage(frames(1, size=32)[0])], "x", QUESTIONS)
    assert resized.per_image["red"].shape == (1, 2)


def test_unknown_answer_options_are_clear_errors():
    model, tok = tiny_model()
    policy = TinyPolicy(model, tok)
    with pytest.raises(UnknownAnswerError, match="maybe"):
        policy.answer(images(1), "x", [PolicyQuestion("q", "Is it?", ("yes", "maybe"))])
    with pytest.raises(PolicyInputError, match="distinct"):
        policy.answer(images(1), "x", [PolicyQuestion("q", "Is it?", ("yes", "yes"))])


def test_checkpoint_roundtrip_and_validation(tmp_path):
    model, tok = tiny_model()
    path = save_tiny_vlm(tmp_path / "ckpt", model, tok, command="test", labels="visible")
    loaded, tok2, meta = load_tiny_vlm(path)
    assert meta["command"] == "test" and tok2.fingerprint == tok.fingerprint
    r1 = TinyPolicy(model, tok).answer(images(2), "Drive safely", QUESTIONS)
    r2 = TinyPolicy(loaded, tok2).answer(images(2), "Drive safely", QUESTIONS)
    np.testing.assert_allclose(r1.per_image["red"], r2.per_image["red"], atol=1e-6)
    other = WordTokenizer.build(["something else entirely"])
    with pytest.raises(TokenizerMismatchError, match="trained with tokenizer"):
        load_tiny_vlm(path, tokenizer=other)
    with pytest.raises(TokenizerMismatchError):
        TinyPolicy(loaded, other)
    # a tokenizer.json swapped for another one
    other.save(path / "tokenizer.json")
    with pytest.raises(TokenizerMismatchError, match="not the tokenizer the weights were trained with"):
        load_tiny_vlm(path)


def test_corrupt_or_missing_checkpoint(tmp_path):
    model, tok = tiny_model()
    path = save_tiny_vlm(tmp_path / "ckpt", model, tok)
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_tiny_vlm(path)
    with pytest.raises(CheckpointError, match="train one"):
        load_tiny_vlm(tmp_path / "nowhere")
    path = save_tiny_vlm(tmp_path / "ckpt2", model, tok)
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["dim"] = 64
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="architecture"):
        load_tiny_vlm(path)


# -- training on a synthetic recording --------------------------------------------------------------

def synthetic_recording(out: Path, episodes: int, seed: int) -> Path:
    """A genex recording of 16x16 frames with a red and/or blue square (facts 'red', 'blue')."""
    from genex.recording import EpisodeRecorder, RecordingManifest, episode_path

    (out / "episodes").mkdir(parents=True)
    manifest = RecordingManifest(env_id="genex/Squares-v0", env_kwargs={}, driver="random", base_seed=seed,
                                 facts=["red", "blue"], action_names=["wait"],
                                 questions=[{"id": "red_later", "text": "Will a red square show up?",
                                             "answers": ["yes", "no"]}],
                                 image_shape=[16, 16, 3])
    (out / "manifest.json").write_text(json.dumps(asdict(manifest)))
    rng = np.random.default_rng(seed)
    for i in range(episodes):
        rec = EpisodeRecorder(["red", "blue"], seed + i, "random")
        for t in range(8):
            img = np.full((16, 16, 3), 40, np.uint8)
            vis = {"red": bool(rng.random() < 0.5), "blue": bool(rng.random() < 0.5)}
            for name, colour in (("red", (230, 30, 30)), ("blue", (30, 30, 230))):
                if vis[name]:
                    y, x = rng.integers(0, 12, 2)
                    img[y: y + 4, x: x + 4] = colour
            obs = {"image": img, "text": "Drive safely"}
            if t == 0:
                rec.start(obs, {"visible": vis, "hidden": {"red_later": True}, "answers": {"red_later": 0}})
            else:
                rec.add(0, obs, 0.0, False, t == 7, {"visible": vis})
        rec.save(episode_path(out, i))
    return out


def test_load_examples_visibility_and_hidden(tmp_path):
    rec = synthetic_recording(tmp_path / "rec", 2, seed=0)
    data = load_examples([rec], 16)
    assert data.frames.shape == (16, 16, 16, 3) and len(data.examples) == 32
    assert {e.kind for e in data.examples} == {"fact"}
    hidden = load_examples([rec], 16, labels="hidden")
    assert len(hidden.examples) == 16 and {e.target for e in hidden.examples} == {0}
    assert hidden.examples[0].prompt.endswith("Will a red square show up?")
    with pytest.raises(ValueError, match="labels"):
        load_examples([rec], 16, labels="oracle")


def test_train_policy_learns_and_writes_checkpoint(tmp_path):
    train = synthetic_recording(tmp_path / "train", 12, seed=0)
    held = synthetic_recording(tmp_path / "held", 4, seed=1000)
    cfg = TrainConfig(data=[str(train)], eval_data=[str(held)], out=str(tmp_path / "ckpt"), image_size=16,
                      patch_size=4, dim=32, vision_layers=1, fusion_layers=1, steps=150, batch_frames=16,
                      lr=3e-3, warmup=10, save_every=50, command="pytest")
    meta = train_policy(cfg, progress=False)
    assert meta["heldout"]["all"]["acc"] > 0.85, meta["heldout"]
    model, tok, saved = load_tiny_vlm(tmp_path / "ckpt")
    assert saved["command"] == "pytest" and saved["labels"] == "visible"
    assert (tmp_path / "ckpt" / "model.safetensors").stat().st_size < 10e6
    data = load_examples([held], 16)
    metrics = evaluate(model, tok, data, "packer", 4)
    assert 0 <= metrics["all"]["acc"] <= 1


def test_cli_train_policy_init_and_hidden_labels(tmp_path, capsys):
    from genex.cli import main

    train = synthetic_recording(tmp_path / "train", 3, seed=0)
    held = synthetic_recording(tmp_path / "held", 1, seed=99)
    common = ["--data", str(train), "--eval-data", str(held), "--image-size", "16", "--patch-size", "4", "--dim", "32",
              "--vision-layers", "1", "--fusion-layers", "1", "--steps", "5", "--batch-frames", "4", "--quiet"]
    assert main(["train-policy", *common, "--out", str(tmp_path / "a")]) == 0
    assert "held-out all" in capsys.readouterr().out
    assert main(["train-policy", *common, "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a")]) == 0
    _, _, meta = load_tiny_vlm(tmp_path / "b")
    assert meta["init"]["path"] == str(tmp_path / "a") and "train-policy" in meta["init"]["command"]
    assert main(["train-policy", *common, "--out", str(tmp_path / "h"), "--labels", "hidden"]) == 0
    _, _, meta = load_tiny_vlm(tmp_path / "h")
    assert meta["labels"] == "hidden"
    with pytest.raises(SystemExit, match="genex train-policy"):
        main(["train-policy", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])


def test_layering_policy_never_imports_envs_or_transformers():
    import subprocess
    import sys

    code = ("import sys, genex.policy, genex.policy.train, genex.policy.server, genex.policy.openai_api, "
            "genex.policy.cli, genex.belief; "
            "print(','.join(sorted(m for m in sys.modules if m.startswith('genex.envs') or "
            "m.split('.')[0] == 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"genex.policy pulled in: {out}"


def test_frame_sampling_weights_favour_rare_answers():
    from genex.policy.data import Example
    from genex.policy.train import frame_sampling_weights

    exs = [Example(f, "x <sep> Is a ball visible?", ("yes", "no"), 0 if f == 0 else 1, "fact", "e")
           for f in range(10)]
    w = frame_sampling_weights(exs, list(range(10)))
    assert w[0] == pytest.approx(5.0) and w[1] == pytest.approx(10 / 18)
    assert frame_sampling_weights(exs, list(range(10)), cap=2.0)[0] == 2.0


def test_subsample_spreads_and_renumbers(tmp_path):
    from genex.policy.data import subsample

    data = load_examples([synthetic_recording(tmp_path / "rec", 4, seed=0)], 16)
    small = subsample(data, 5)
    assert len(small.frames) == 5 and {e.frame for e in small.examples} == set(range(5))
    np.testing.assert_array_equal(small.frames[1], data.frames[6])  # evenly spaced: 0, 6, 12, ...
    assert len(subsample(data, None).frames) == 32


def test_fact_questions_ask_gui_labels_as_text():
    from genex.policy.data import fact_question

    assert fact_question("label:Battery saver") == "Is the text 'Battery saver' on screen?"
    assert fact_question("pedestrian") == "Is a pedestrian visible?"


def test_numeric_negatives_ask_a_shown_number_and_the_same_with_one_digit_changed(tmp_path):
    import random

    import genex.envs  # noqa: F401
    from genex.policy.data import perturb_digit
    from genex.recording import record_episodes

    rng = random.Random(0)
    assert all(perturb_digit("Price: $175", rng) != "Price: $175" for _ in range(50))
    assert {len(perturb_digit("Price: $175", rng)) for _ in range(50)} == {11}
    with pytest.raises(ValueError, match="no digit"):
        perturb_digit("Buy", rng)
    rec = tmp_path / "shop"
    record_episodes("genex/TicketShop-v0", rec, 3, driver="expert", seed=0, progress=False)
    plain = load_examples([rec], 32)
    numeric = load_examples([rec], 32, numeric_negatives=2)
    assert [e.prompt for e in plain.examples] == [e.prompt for e in load_examples([rec], 32).examples]
    extra = {(e.frame, e.prompt, e.target) for e in numeric.examples} - {(e.frame, e.prompt, e.target)
                                                                         for e in plain.examples}
    prices = [(f, p, t) for f, p, t in extra if "Price: $" in p]
    assert any(t == 1 for _, _, t in prices) and all(f < len(numeric.frames) for f, _, _ in prices)


# -- architecture switches: conv stem, readout fusion ---------------------------------------------------

@pytest.mark.parametrize("stem,fusion", [("conv", "full"), ("patch", "readout"), ("conv", "readout")])
def test_architecture_switches_keep_the_contract(stem, fusion):
    """Every (stem, fusion) answers with the same shapes, and prefix caching / batching stay exact."""
    model, tok = tiny_model(stem=stem, fusion=fusion)
    assert model.encode_images(torch.from_numpy(np.stack(frames(3))), "none", 0).shape == (3, 17, 32)
    ims = images(3) + images(2, seed=1, imagined=True)
    ref = TinyPolicy(model, tok, prefix_cache=False, batch_frames=False, history_size=0).answer(
        ims, "Drive safely", QUESTIONS)
    fast = TinyPolicy(model, tok).answer(ims, "Drive safely", QUESTIONS)
    for q in QUESTIONS:
        assert ref.per_image[q.id].shape == (5, 2)
        np.testing.assert_allclose(fast.per_image[q.id], ref.per_image[q.id], atol=1e-5)


def test_readout_fusion_projects_each_frame_once_and_matches_per_pair_input():
    """``fuse(visual[F], prompts, frame_index)`` == ``fuse(visual[frame_index], prompts)``; frames stay fixed."""
    from genex.policy.checkpoint import encode_texts

    model, tok = tiny_model(fusion="readout")
    visual = model.encode_images(torch.from_numpy(np.stack(frames(2))))
    ids = encode_texts(tok, [format_prompt("Drive safely", q.text) for q in QUESTIONS] * 2, 48)
    prompts = model.encode_prompts(ids)
    index = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(model.fuse(visual, prompts, index), model.fuse(visual[index], prompts))
    # the answer about frame 0 does not depend on which other frames share the batch
    alone = model.fuse(visual[:1], prompts.select(torch.tensor([0, 1])), torch.tensor([0, 0]))
    torch.testing.assert_close(alone, model.fuse(visual, prompts, index)[:2])


def test_readout_fusion_trains_faster_per_question_than_full():
    """Readout fusion's per-question work does not grow with the visual tokens: count the fused rows."""
    full, _ = tiny_model(fusion="full")
    readout, _ = tiny_model(fusion="readout")
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in readout.parameters())
    calls = {}

    def count(name):
        def hook(_, args, out):
            calls[name] = calls.get(name, 0) + args[0].shape[0] * args[0].shape[1]
        return hook

    for name, m in (("full", full), ("readout", readout)):
        m.blocks[0].qkv.register_forward_hook(count(name))
        batch = {"images": torch.from_numpy(np.stack(frames(2))), "frame": torch.tensor([0, 0, 1, 1, 1, 0]),
                 "prompt": torch.randint(1, 10, (6, 7)), "options": torch.randint(1, 10, (6, 2, 1)),
                 "valid": torch.ones(6, 2, dtype=torch.bool), "target": torch.zeros(6, dtype=torch.long)}
        m(batch)
    # full: 6 prompts x 7 tokens + 6 pairs x (17 visual + 1 readout); readout: 42 + 2 frames x 17 + 6 readouts
    assert calls == {"full": 42 + 6 * 18, "readout": 42 + 2 * 17 + 6}


def test_bad_architecture_options_are_clear_errors():
    with pytest.raises(ValueError, match="stem"):
        TinyVLMConfig(stem="resnet")
    with pytest.raises(ValueError, match="fusion"):
        TinyVLMConfig(fusion="late")
    with pytest.raises(ValueError, match="power of 2"):
        TinyVLMConfig(image_size=24, patch_size=6, stem="conv")


def test_old_checkpoints_without_the_switches_load_as_patch_full(tmp_path):
    model, tok = tiny_model()
    path = save_tiny_vlm(tmp_path / "old", model, tok)
    cfg = json.loads((path / "config.json").read_text())
    del cfg["model"]["stem"], cfg["model"]["fusion"]
    (path / "config.json").write_text(json.dumps(cfg))
    loaded, _, _ = load_tiny_vlm(path)
    assert (loaded.config.stem, loaded.config.fusion) == ("patch", "full")


def test_training_records_a_learning_curve_and_checks_the_device(tmp_path):
    train = synthetic_recording(tmp_path / "train", 6, seed=0)
    held = synthetic_recording(tmp_path / "held", 2, seed=1000)
    cfg = TrainConfig(data=[str(train)], eval_data=[str(held)], out=str(tmp_path / "ckpt"), image_size=16,
                      patch_size=4, dim=32, vision_layers=1, fusion_layers=1, steps=20, batch_frames=8,
                      fusion="readout", stem="conv", eval_every=10, save_every=0)
    meta = train_policy(cfg, progress=False)
    assert [p["step"] for p in meta["eval_history"]] == [10, 20]
    assert all(0 <= p["all_acc"] <= 1 for p in meta["eval_history"])
    model, _, saved = load_tiny_vlm(tmp_path / "ckpt")
    assert model.config.fusion == "readout" and saved["eval_history"] == meta["eval_history"]
    from genex.devices import select_device

    assert select_device("cpu").type == "cpu" and select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        from dataclasses import replace

        with pytest.raises(ValueError, match="CUDA is not available"):
            train_policy(replace(cfg, device="cuda", out=str(tmp_path / "gpu")), progress=False)


def test_cli_eval_policy_scores_a_checkpoint(tmp_path, capsys):
    from genex.cli import main

    rec = synthetic_recording(tmp_path / "rec", 2, seed=5)
    model, tok = tiny_model()
    save_tiny_vlm(tmp_path / "ckpt", model, tok, labels="visible")
    assert main(["eval-policy", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(rec), "--max-frames", "8",
                 "--out", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "8 frames, 16 questions" in out and "| all | 16 |" in out
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["frames"] == 8 and 0 <= saved["metrics"]["all"]["acc"] <= 1
    assert main(["eval-policy", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(rec), "--max-frames", "8",
                 "--by-question"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if ":fact:" in line]
    assert len(rows) == 2 and sum(int(r.split("|")[2]) for r in rows) == 16  # red + blue square, 8 frames each
    with pytest.raises(SystemExit, match="genex eval-policy"):
        main(["eval-policy", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(tmp_path / "missing")])


def test_policy_metrics_know_every_gui_env():
    from genex.envs import GUI_ENV_IDS
    from genex.policy.train import GUI_NAMES

    assert GUI_NAMES == {env_id.split("/")[-1] for env_id in GUI_ENV_IDS}
