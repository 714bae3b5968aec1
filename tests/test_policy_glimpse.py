"""Pixel-phrase glimpses: phrase choice, rendering, the normalised correlation, and the model/policy contract."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from genex.policy import PolicyQuestion, TaggedImage, TinyPolicy, TinyVLM, TinyVLMConfig, WordTokenizer
from genex.policy import load_tiny_vlm, save_tiny_vlm
from genex.policy.data import Example, FrameSet, fact_question, format_prompt, text_question
from genex.policy.glimpse import GlimpseMatcher, query_phrases, render_phrase
from genex.policy.train import evaluate, make_batch

torch.set_num_threads(1)

WORDS = ("Captions", "Wi-Fi", "Display", "Privacy", "Reset", "Media", "Sync", "Zip")
BACKGROUND = 232


def paint(screen: np.ndarray, text: str, y: int, x: int, ink: int = 200) -> None:
    """Draw ``text`` (the renderer's own glyphs, dark on light) into ``uint8[S, S, 3]`` at top-left (y, x)."""
    m = render_phrase(text, 8, 128)
    h, w = min(m.shape[0], screen.shape[0] - y), min(m.shape[1], screen.shape[1] - x)
    screen[y: y + h, x: x + w] = (screen[y: y + h, x: x + w] - m[:h, :w, None] * ink).clip(0, 255).astype(np.uint8)


def test_query_phrases_take_quotes_then_salient_words():
    p = format_prompt("Change the name to Grace Fischer and the phone to 555-3529, then save.",
                      "Does the Name field show the new name?")
    assert query_phrases(p) == [("Name", 1), ("Grace", 2), ("Fischer", 2), ("555-3529", 2)]
    p = format_prompt("Turn on Night light", text_question("Do not disturb"))
    assert query_phrases(p) == [("Do not disturb", 0), ("Night", 2)]
    assert query_phrases(format_prompt("Delete draft_23.zip", "Is a confirm dialog visible?")) == \
        [("draft_23.zip", 2)]
    assert query_phrases(format_prompt("Buy a ticket to Prague for at most $60", "Q?"), max_phrases=1) == \
        [("Prague", 2)]
    assert query_phrases("no separator, nothing salient") == []


def test_glimpse_labels_read_a_multi_word_label_that_ends_the_instruction_as_one_phrase():
    """'Turn on Auto brightness' must not look for 'Auto': that matches 'Autoplay', 'Auto login', 'Auto update'."""
    q = fact_question("target")
    assert query_phrases(format_prompt("Turn on Auto brightness", q)) == [("Auto", 2)]  # the old reading
    assert query_phrases(format_prompt("Turn on Auto brightness", q), labels=True) == [("Auto brightness", 2)]
    assert query_phrases(format_prompt("Turn on Do not disturb.", q), labels=True) == [("Do not disturb", 2)]
    assert query_phrases(format_prompt("Turn on Wi-Fi", q), labels=True) == [("Wi-Fi", 2)]
    # not a label: the sentence goes on past 2 lowercase words, or holds a price, a name, a number
    assert query_phrases(format_prompt("Buy a ticket to Prague for at most $60", q), labels=True) == \
        [("Prague", 2), ("$60", 2)]
    assert query_phrases(format_prompt("Open Mail and wait for the new message", q), labels=True) == [("Mail", 2)]
    p = format_prompt("Change the name to Grace Fischer and the phone to 555-3529, then save.",
                      "Does the Name field show the new name?")
    assert query_phrases(p, labels=True) == [("Name", 1), ("Grace", 2), ("Fischer", 2), ("555-3529", 2)]
    with pytest.raises(ValueError, match="glimpse > 0"):
        TinyVLMConfig(image_size=128, fusion="readout", glimpse_labels=True)
    assert TinyVLMConfig(image_size=128, fusion="readout", glimpse=4, glimpse_labels=True).glimpse_labels


def test_render_phrase_is_a_cached_coverage_mask():
    m = render_phrase("Wi-Fi", 8, 128)
    assert m.dtype == np.float32 and m.shape[0] == 10 and 15 < m.shape[1] < 40
    assert 0.0 <= m.min() and m.max() <= 1.0 and m.max() > 0.9
    assert render_phrase("Wi-Fi", 8, 128) is m and not m.flags.writeable
    assert render_phrase("x" * 200, 8, 128).shape[1] == 128  # clipped to the screen


def test_correlation_finds_a_pasted_word_at_any_pixel_phase():
    torch.manual_seed(0)
    g = GlimpseMatcher(dim=32, channels=8, image_size=128)
    screen = np.full((2, 128, 128, 3), BACKGROUND, np.uint8)
    places = [(40, 20), (91, 61)]  # even and odd pixel phase
    for i, (y, x) in enumerate(places):
        paint(screen[i], "Captions", y, x)
        paint(screen[i], "Wi-Fi", 10, 80)
    feats = g.encode_screens(torch.from_numpy(screen))
    assert feats.shape == (2, 8, 64, 64)
    templates, widths = g._encode_phrases(["Captions"])
    with torch.no_grad():
        out = g._pair_features(feats, [(0, "Captions"), (1, "Captions")], templates, widths, {"Captions": 0})
    peak, y, x = out[:, 0], out[:, 2], out[:, 3]
    # a normalised correlation: 1 where the screen shows the template at its pixel phase; lower (0.85 here,
    # untrained) one pixel off in x and y, which training has to make up for
    assert 0.99 < float(peak[0]) <= 1.0 + 1e-4 and 0.8 < float(peak[1]) < float(peak[0])
    for i, (py, px) in enumerate(places):  # the soft-argmax is the template's top-left, 2 px margin, half size
        assert abs(float(y[i]) * 63 - (py - 2) / 2) <= 1.5 and abs(float(x[i]) * 63 - (px - 2) / 2) <= 1.5


def test_glimpse_tokens_shapes_mask_and_slots():
    torch.manual_seed(0)
    g = GlimpseMatcher(dim=32, channels=4, image_size=128, max_phrases=3)
    feats = g.encode_screens(torch.full((2, 128, 128, 3), BACKGROUND, dtype=torch.uint8))
    phrases = [[("Wi-Fi", 0), ("Sync", 2)], [], [("Zip", 1)]]
    tokens, mask = g.tokens(feats, torch.tensor([0, 1, 1]), phrases)
    assert tokens.shape == (3, 3, 32) and mask.tolist() == [[True, True, False], [False] * 3, [True, False, False]]
    assert torch.all(tokens[~mask] == 0)


def glimpse_model(seed: int = 0, **kw) -> tuple[TinyVLM, WordTokenizer]:
    words = " ".join(text_question(w) for w in WORDS)
    tok = WordTokenizer.build([f"Find it <sep> {words} yes no"])
    torch.manual_seed(seed)
    cfg = TinyVLMConfig(image_size=128, patch_size=16, dim=32, heads=4, vision_layers=1, fusion_layers=1,
                        stem="patch", fusion="readout", glimpse=8, vocab_size=len(tok),
                        tokenizer_fingerprint=tok.fingerprint, **kw)
    return TinyVLM(cfg), tok


def word_screens(n: int, seed: int) -> FrameSet:
    """Screens with 2 of :data:`WORDS` at random places; one question about a shown and one about another word."""
    rng = random.Random(seed)
    frames = np.full((n, 128, 128, 3), BACKGROUND, np.uint8)
    examples = []
    for i in range(n):
        shown = rng.sample(WORDS, 2)
        for j, w in enumerate(shown):
            paint(frames[i], w, rng.randrange(4 + 60 * j, 50 + 60 * j), rng.randrange(0, 70), rng.choice((150, 220)))
        other = rng.choice([w for w in WORDS if w not in shown])
        examples.append(Example(i, format_prompt("Find it", text_question(shown[0])), ("yes", "no"), 0, "text", "x"))
        examples.append(Example(i, format_prompt("Find it", text_question(other)), ("yes", "no"), 1, "text", "x"))
    return FrameSet(frames, examples)


def test_glimpse_model_learns_to_find_words_it_cannot_memorise():
    """Words at random places and contrasts: the glimpse model learns "is 'W' on screen" in 60 steps."""
    model, tok = glimpse_model()
    train, held = word_screens(64, seed=1), word_screens(48, seed=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    for _ in range(60):
        frames = set(rng.sample(range(64), 16))
        loss, _ = model(make_batch(train.frames, [e for e in train.examples if e.frame in frames], tok, model.config))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert evaluate(model, tok, held)["all"]["acc"] >= 0.9


def test_glimpse_policy_matches_batch_evaluation_and_keeps_screen_history(tmp_path):
    model, tok = glimpse_model(seed=3)
    save_tiny_vlm(tmp_path / "ckpt", model, tok)
    model, tok, _ = load_tiny_vlm(tmp_path / "ckpt")
    assert model.config.glimpse == 8 and model.glimpse is not None
    data = word_screens(3, seed=5)
    q = [PolicyQuestion(w, text_question(w), ("yes", "no")) for w in WORDS[:3]]
    policy = TinyPolicy(model, tok, history_size=4)
    imgs = [TaggedImage(f, step=i) for i, f in enumerate(data.frames)]
    r = policy.answer(imgs, "Find it", q)
    exs = [Example(i, format_prompt("Find it", x.text), ("yes", "no"), 0, "text", "x") for i in range(3) for x in q]
    batch = make_batch(data.frames, exs, tok, model.config)
    with torch.no_grad():
        p = torch.softmax(model.batch_logits(batch), -1)
    for j, x in enumerate(q):
        np.testing.assert_allclose(r.per_image[x.id][:, 0], p.view(3, 3, 2)[:, j, 0].numpy(), atol=1e-5)
    # remembered frames carry their screen features: answering about them needs no raw frame
    r2 = policy.answer(imgs[2:], "Find it", q, use_history=True)
    assert r2.trace["history_rows"] == 2
    np.testing.assert_allclose(r2.per_image[q[0].id][1:, 0], r.per_image[q[0].id][:2, 0], atol=1e-5)


def test_glimpse_needs_readout_fusion():
    with pytest.raises(ValueError, match="readout"):
        TinyVLMConfig(image_size=128, fusion="full", glimpse=8)
    with pytest.raises(ValueError, match="glimpse"):
        TinyVLMConfig(image_size=128, fusion="readout", glimpse=-1)


def test_quoted_phrases_keep_apostrophes_and_mismatched_inputs_are_clear_errors():
    p = format_prompt("Turn on Sync", text_question("Don't save"))
    assert query_phrases(p) == [("Don't save", 0), ("Sync", 2)]
    model, tok = glimpse_model()
    data = word_screens(2, seed=0)
    batch = make_batch(data.frames, data.examples, tok, model.config)
    screens = model.encode_screens(batch["images"])
    with pytest.raises(ValueError, match="phrase lists"):
        model.glimpse_tokens(screens, batch["frame"], batch["texts"][:1])
    with pytest.raises(ValueError, match="glimpses"):
        model.fuse(model.encode_images(batch["images"]), model.encode_prompts(batch["prompt"]), batch["frame"])
    with pytest.raises(KeyError):
        model({k: v for k, v in batch.items() if k != "texts"})
