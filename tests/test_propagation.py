import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vos_lab.errors import VosLabError
from vos_lab.features import build_encoder
from vos_lab.propagation import (
    PropagationConfig,
    dense_propagation,
    downsample_labels,
    propagate_video,
    upsample_labels,
    windowed_propagation,
)


def _random_problem(h, w, n, channels=16, labels=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = F.normalize(torch.randn(channels, h, w, generator=generator), dim=0)
    keys = F.normalize(torch.randn(n, channels, h, w, generator=generator), dim=1)
    soft = torch.softmax(torch.randn(n, labels, h, w, generator=generator), dim=1)
    return query, keys, soft


@pytest.mark.parametrize("h,w,radius,n,topk", [(13, 17, 3, 3, 5), (20, 9, 12, 2, 7), (8, 8, 0, 2, 1),
                                               (31, 40, 5, 4, 10), (7, 30, 2, 1, 200), (20, 35, 12, 8, 5)])
def test_windowed_equals_dense(h, w, radius, n, topk):
    query, keys, soft = _random_problem(h, w, n)
    windowed = windowed_propagation(query, keys, soft, radius, topk, 0.1)
    dense = dense_propagation(query, keys, soft, radius, topk, 0.1)
    assert torch.allclose(windowed, dense, atol=1e-5)
    assert torch.allclose(windowed.sum(0), torch.ones(h, w), atol=1e-5), "soft labels stay a distribution"


@pytest.mark.parametrize("h,w,radius,n,topk", [(13, 17, 3, 3, 5), (20, 9, 12, 2, 7), (31, 40, 5, 4, 10)])
def test_benchmark_reference_is_dino_and_agrees(h, w, radius, n, topk):
    from vos_lab.bench import dino_propagation

    query, keys, soft = _random_problem(h, w, n)
    windowed = windowed_propagation(query, keys, soft, radius, topk, 0.1)
    assert torch.allclose(dino_propagation(query, keys, soft, radius, topk, 0.1), windowed, atol=1e-5)


def test_one_step_function_chooses_dense_or_windowed(monkeypatch):
    import vos_lab.propagation as propagation

    calls = []
    monkeypatch.setattr(propagation, "dense_propagation", lambda *a: calls.append("dense"))
    monkeypatch.setattr(propagation, "windowed_propagation", lambda *a: calls.append("windowed"))
    small, large = _random_problem(20, 30, 2), _random_problem(40, 60, 2)
    config = PropagationConfig()
    for query, keys, soft in (small, large):
        propagation.propagate_step(query, keys, soft, config)
    propagation.propagate_step(*large, PropagationConfig(radius=None))
    assert calls == ["dense", "windowed", "dense"]
    assert 20 * 30 <= propagation.DENSE_CELLS < 40 * 60


def test_radius_restricts_matches():
    # The only identical key sits 3 cells away: radius 2 cannot see it, radius 3 copies its label.
    h, w = 12, 12
    query = torch.zeros(2, h, w)
    query[0] = 1.0
    keys = torch.zeros(1, 2, h, w)
    keys[0, 1] = 1.0
    keys[0, :, 5, 8] = torch.tensor([1.0, 0.0])
    labels = torch.zeros(1, 2, h, w)
    labels[0, 0] = 1.0
    labels[0, :, 5, 8] = torch.tensor([0.0, 1.0])
    near = windowed_propagation(query, keys, labels, radius=3, topk=1, temperature=0.1)
    far = windowed_propagation(query, keys, labels, radius=2, topk=1, temperature=0.1)
    assert near[1, 5, 5] == 1.0 and far[1, 5, 5] == 0.0


def test_context_references():
    assert PropagationConfig(context=3).references(10) == [0, 7, 8, 9]
    assert PropagationConfig(context=7).references(2) == [0, 1]
    mast = PropagationConfig(context=3, context_stride=2, long_term=(0, 5))
    assert mast.references(12) == [0, 5, 7, 9, 11]
    assert mast.references(4) == [0, 1, 3]


@pytest.mark.parametrize("field,value", [("topk", 0), ("temperature", 0.0), ("radius", -2), ("long_term", (3,))])
def test_invalid_config_is_a_clear_error(field, value):
    with pytest.raises(VosLabError, match=field):
        PropagationConfig(**{field: value})


def test_label_resampling_keeps_geometry():
    onehot = torch.zeros(2, 20, 27)
    onehot[1, :, 9:] = 1
    onehot[0, :, :9] = 1
    small = downsample_labels(onehot, (3, 4), 8)
    assert small.shape == (2, 3, 4) and torch.allclose(small.sum(0), torch.ones(3, 4))
    big = upsample_labels(small, (20, 27), 8)
    assert big.shape == (2, 20, 27) and (big.argmax(0)[:, 20:] == 1).all() and (big.argmax(0)[:, :4] == 0).all()


def test_static_video_propagates_perfectly():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ids = np.zeros((48, 64), np.uint8)
    ids[8:24, 16:40] = 1
    ids[30:46, 40:60] = 2
    encoder = build_encoder("lab")
    config = PropagationConfig(topk=1)  # each cell's best match is itself
    out = list(propagate_video(lambda f: encoder.encode(f)[0], lambda i: frame, 5, ids, config))
    assert len(out) == 5 and all(o.shape == ids.shape for o in out)
    assert all((o == ids).mean() > 0.95 for o in out)  # errors only where boundaries cut 8x8 cells


def test_shifted_video_follows_the_object():
    rng = np.random.default_rng(1)
    background = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    background[..., 0] //= 4  # a bluish-green background and a red object: colour tells them apart
    texture = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    texture[..., 0] = 255

    def frame(t):
        image = background.copy()
        image[24:40, 16 + 8 * t: 32 + 8 * t] = texture
        return image

    first = np.zeros((64, 96), np.uint8)
    first[24:40, 16:32] = 1
    encoder = build_encoder("rgb")
    out = list(propagate_video(lambda f: encoder.encode(f)[0], frame, 4, first, PropagationConfig(topk=3)))
    truth = np.zeros_like(first)
    truth[24:40, 40:56] = 1
    iou = ((out[3] == 1) & (truth == 1)).sum() / ((out[3] == 1) | (truth == 1)).sum()
    assert iou > 0.6


def test_encoders_have_stride_8_and_unit_norm():
    frame = np.zeros((61, 83, 3), np.uint8)
    for name in ("rgb", "lab", "random-resnet18"):
        features = build_encoder(name).encode(frame)
        assert features.shape[-2:] == (8, 11), name
        assert torch.allclose(features.norm(dim=1), torch.ones(1, 8, 11), atol=1e-4)


def test_unknown_features_is_a_clear_error():
    with pytest.raises(VosLabError, match="unknown features 'sift'"):
        build_encoder("sift")


def _tied_problem(h, w, n, channels=4, labels=3, seed=0):
    """Features with entries in {-0.5, 0, 0.5}: every affinity is an exact multiple of 0.25, so many positions
    tie with the k-th best (as flat image regions do with Lab features)."""
    generator = torch.Generator().manual_seed(seed)
    query = torch.randint(-1, 2, (channels, h, w), generator=generator) / 2
    keys = torch.randint(-1, 2, (n, channels, h, w), generator=generator) / 2
    soft = torch.softmax(torch.randn(n, labels, h, w, generator=generator), dim=1)
    return query, keys, soft


@pytest.mark.parametrize("h,w,radius,n,topk", [(13, 17, 3, 3, 5), (20, 35, 12, 8, 5), (9, 30, 2, 2, 1),
                                               (16, 16, 5, 1, 40), (7, 30, 2, 1, 200), (31, 40, 4, 4, 10)])
def test_ties_at_the_kth_score_are_all_kept_as_in_dino(h, w, radius, n, topk):
    from vos_lab.bench import dino_propagation

    query, keys, soft = _tied_problem(h, w, n)
    dino = dino_propagation(query, keys, soft, radius, topk, 0.1)
    for step in (windowed_propagation, dense_propagation):
        out = step(query, keys, soft, radius, topk, 0.1)
        assert torch.allclose(out, dino, atol=1e-6), step.__name__
        assert torch.equal(out.argmax(0), dino.argmax(0)), step.__name__


@pytest.mark.parametrize("h,w,radius,n,topk", [(13, 17, 3, 3, 5), (9, 30, 2, 2, 1), (16, 16, 5, 1, 40)])
def test_ties_are_judged_on_dinos_weights(h, w, radius, n, topk):
    # Affinities that are consecutive float32 numbers just below 1: some differ in the last bit while their
    # weights exp(affinity / 0.1) are equal, so DINO keeps both.
    from vos_lab.bench import dino_propagation

    generator = torch.Generator().manual_seed(0)
    close = torch.tensor([0.999999], dtype=torch.float32)
    for _ in range(12):
        close = torch.cat([close, torch.nextafter(close[-1:], torch.tensor([2.0]))])
    query = torch.ones(1, h, w)
    keys = close[torch.randint(0, len(close), (n, 1, h, w), generator=generator)]
    soft = torch.softmax(torch.randn(n, 2, h, w, generator=generator), dim=1)
    dino = dino_propagation(query, keys, soft, radius, topk, 0.1)
    for step in (windowed_propagation, dense_propagation):
        out = step(query, keys, soft, radius, topk, 0.1)
        assert torch.allclose(out, dino, atol=1e-6), step.__name__
        assert torch.equal(out.argmax(0), dino.argmax(0)), step.__name__


def test_labels_to_ids_is_the_upsampled_argmax_first_on_ties():
    from vos_lab.propagation import labels_to_ids, upsample_labels

    soft = torch.rand(4, 6, 9)
    soft[1, :2] = soft[2, :2] = 2.0  # a tie: the first label wins, as argmax
    ids = labels_to_ids(soft, (45, 70), 8)
    assert ids.dtype == np.uint8 and ids.shape == (45, 70)
    assert np.array_equal(ids, upsample_labels(soft, (45, 70), 8).argmax(0).numpy())
    assert (ids[:12] == 1).all()  # rows of the first two cells, before bilinear blends in the third
