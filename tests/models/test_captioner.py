"""LRCN1u / 2u / 2f captioners (methods.md 1.5, 1.6): overfitting four images to their exact captions,
the factored decoder's bottom LSTM blind to the image, teacher forcing ignoring padding, frozen vs
fine-tuned CNN, clip encoders; decoding: beam 1 = greedy, a batch = its items one by one."""

from __future__ import annotations

import pytest
import torch

from vidrec.models import get_model
from vidrec.models.captioner import CaptionDecoder, caption_loss
from vidrec.text import Vocabulary
from vidrec.text import decode as D

pytestmark = pytest.mark.usefixtures("one_thread")
CAPTIONS = ["a red square on black", "a green bar at the top", "two blue dots", "a white frame around grey"]


def four_images() -> torch.Tensor:
    """(4, 1, 3, 32, 32) normalised images whose captions are `CAPTIONS`."""
    x = torch.zeros(4, 3, 32, 32)
    x[0, 0, 8:24, 8:24] = 1.0
    x[1, 1, :6, :] = 1.0
    x[2, 2, 5:10, 5:10] = x[2, 2, 20:25, 20:25] = 1.0
    x[3] = 0.5
    x[3, :, :3, :] = x[3, :, -3:, :] = x[3, :, :, :3] = x[3, :, :, -3:] = 1.0
    return ((x - 0.45) / 0.25).unsqueeze(1)


def tiny(variant: str, vocab_size: int = 30, **kw):
    torch.manual_seed(0)
    kw = {"backbone": "none", "feature_dim": 16, "hidden_size": 32, "embed_size": 16, "dropout": 0.0, **kw}
    return get_model(f"lrcn{variant}_captioner", num_classes=vocab_size, **kw).eval()


@pytest.mark.parametrize("variant", ["1u", "2u", "2f"])
def test_overfits_four_images_to_exact_captions(variant):
    vocab = Vocabulary.build(CAPTIONS)
    caps = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(vocab.encode(c)) for c in CAPTIONS], batch_first=True
    )
    model = tiny(variant, len(vocab), backbone="resnet18", hidden_size=64, embed_size=32)  # frozen random CNN
    x = four_images()
    feats = model.frame_features(x)  # (4, 1, 512): the frozen CNN's features, computed once
    model.encoder = None  # the same model on those features
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    for _ in range(150):
        loss = caption_loss(model(feats, caps), caps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ids = D.greedy(model.decoder, model.encode(feats))
    assert [vocab.decode(r) for r in ids] == CAPTIONS


def test_lrcn2f_bottom_lstm_ignores_the_image():
    words = torch.randint(4, 30, (3, 7))
    a, b = torch.randn(3, 16), torch.randn(3, 16) * 5
    for variant, blind in (("2f", True), ("2u", False), ("1u", False)):
        dec = tiny(variant).decoder
        bottom_a, bottom_b = dec.run(a, words)[2], dec.run(b, words)[2]
        assert torch.equal(bottom_a, bottom_b) is blind, variant
        assert not torch.allclose(dec(a, words), dec(b, words))  # the prediction still sees the image


def test_teacher_forcing_loss_ignores_padding():
    model = tiny("2f")
    feats = torch.randn(2, 1, 16)
    caps = torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0]])
    longer = torch.cat([caps, torch.zeros(2, 3, dtype=torch.long)], 1)
    assert torch.allclose(caption_loss(model(feats, caps), caps), caption_loss(model(feats, longer), longer))
    # the loss is the mean over the 5 real tokens of -log p
    logp = torch.log_softmax(model(feats, caps), -1).gather(2, caps.unsqueeze(-1))[..., 0]
    assert torch.allclose(caption_loss(model(feats, caps), caps), -logp[caps != 0].mean())


def test_frozen_cnn_gets_no_gradient_and_fine_tuned_does():
    x = torch.randn(2, 1, 3, 32, 32)
    caps = torch.tensor([[5, 2], [6, 2]])
    for freeze in (True, False):
        model = tiny("1u", backbone="resnet18", freeze_cnn=freeze).train()
        assert model.encoder.training is not freeze  # frozen: BatchNorm keeps its statistics
        caption_loss(model(x, caps), caps).backward()
        cnn = [p.grad for p in model.encoder.parameters()]
        assert (
            all(g is None for g in cnn) if freeze else any(g is not None and g.abs().sum() > 0 for g in cnn)
        )
        assert model.decoder.out.weight.grad.abs().sum() > 0


def test_clip_encoders_mean_is_order_free_lstm_is_not():
    clip = torch.randn(2, 5, 16)
    reversed_clip = clip.flip(1)
    mean = tiny("2f", clip_encoder="mean")
    assert torch.allclose(mean.encode(clip), mean.encode(reversed_clip), atol=1e-6)
    assert torch.allclose(mean.encode(clip), clip.mean(1))
    lstm = tiny("2f", clip_encoder="lstm", clip_hidden=24)
    assert lstm.encode(clip).shape == (2, 24)
    assert not torch.allclose(lstm.encode(clip), lstm.encode(reversed_clip))
    caps = torch.tensor([[5, 2], [6, 2]])
    assert lstm(clip, caps).shape == (2, 2, 30)


def test_beam_width_1_equals_greedy():
    for variant in ("1u", "2u", "2f"):
        dec = tiny(variant).decoder
        cond = torch.randn(6, 16) * 3
        assert torch.equal(D._trim(D.greedy(dec, cond, max_len=12)), D.beam(dec, cond, width=1, max_len=12))


def test_beam_finds_at_least_the_greedy_likelihood():
    dec = tiny("2f").decoder
    cond = torch.randn(6, 16) * 3

    def norm_ll(ids):
        return D.sentence_loglik(dec, cond, ids) / (ids != 0).sum(1)

    assert (
        norm_ll(D.beam(dec, cond, width=4, max_len=12)) >= norm_ll(D.greedy(dec, cond, max_len=12)) - 1e-5
    ).all()


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_a_batch_gives_what_its_items_give_one_by_one(method):
    dec = tiny("2u").decoder
    cond = torch.randn(5, 16) * 3
    batch = D.decode(dec, cond, method=method, beam_width=3, n=8, temperature=1.5, max_len=10, seed=3)
    for i in range(5):
        one = D.decode(
            dec, cond[i : i + 1], method=method, beam_width=3, n=8, temperature=1.5, max_len=10, seed=3
        )
        assert torch.equal(D._trim(batch[i : i + 1]), one), (method, i)


def test_sampling_keeps_the_most_likely_of_its_samples_and_depends_on_the_seed():
    dec = tiny("1u").decoder
    cond = torch.randn(4, 16)
    a = D.sample_best(dec, cond, n=20, temperature=1.5, max_len=10, seed=0)
    assert torch.equal(a, D.sample_best(dec, cond, n=20, temperature=1.5, max_len=10, seed=0))
    one = D.sample_best(dec, cond, n=1, temperature=1.5, max_len=10, seed=0)
    ll = D.sentence_loglik(dec, cond, a) / (a != 0).sum(1)
    ll1 = D.sentence_loglik(dec, cond, one) / (one != 0).sum(1)
    assert (ll >= ll1 - 1e-5).all()  # the first sample is among the 20: the kept one is at least as likely
    assert not (D.beam(dec, cond, width=1, max_len=10) == 0).all()
    with pytest.raises(ValueError, match="temperature"):
        D.sample_best(dec, cond, n=2, temperature=0.0)


def test_decoder_rejects_unknown_variant():
    with pytest.raises(ValueError, match="1u, 2u or 2f"):
        CaptionDecoder("3x", vocab_size=10, cond_dim=4)
