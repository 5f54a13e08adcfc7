"""The shared training core: sampling, colour targets, the colourisation losses, checkpoints and resume."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from vos_lab.colour import fit_ab_centres, quantise_ab
from vos_lab.data.clips import ClipSampler, Video, synthetic_videos
from vos_lab.errors import VosLabError
from vos_lab.methods.colourisation import ColourisationMethod, channel_dropout
from vos_lab.methods.corrflow import CorrFlowMethod
from vos_lab.methods.registry import METHODS
from vos_lab.profiles import get_profile
from vos_lab.training.checkpoints import load_checkpoint, load_encoder, load_method
from vos_lab.training.loop import TrainConfig, load_or_train, train
from vos_lab.training.schedule import learning_rate

SMALL = {"width": 8, "multipliers": (1, 2, 2, 2), "embed_dim": 16}


@pytest.fixture(scope="module")
def videos():
    return synthetic_videos(2, 10, 96, 128, seed=0)


def test_clip_shares_one_crop_and_respects_gaps():
    t, h, w = 20, 40, 50
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 0] = np.arange(t)[:, None, None]
    frames[..., 1] = np.arange(h)[None, :, None]
    frames[..., 2] = np.arange(w)[None, None, :]
    sampler = ClipSampler([Video("coords", frames)], length=3, gaps=(2, 5), crop=16, seed=1)
    for _ in range(20):
        clip = sampler.clip().astype(int)
        assert clip.shape == (3, 16, 16, 3)
        assert set(np.diff(clip[:, 0, 0, 0])) <= {2, 5}
        assert (clip[:, :, :, 1:] == clip[:1, :, :, 1:]).all(), "the same crop (and flip) in every frame"


def test_jitter_moves_each_frames_crop_a_little():
    t, h, w = 20, 60, 70
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 1] = np.arange(h)[None, :, None]
    frames[..., 2] = np.arange(w)[None, None, :]
    sampler = ClipSampler([Video("coords", frames)], length=4, gaps=(1,), crop=16, seed=2, jitter=5)
    moved = False
    for _ in range(30):
        clip = sampler.clip().astype(int)
        rows, cols = clip[:, 0, :, 1].min(1), clip[:, :, :, 2].min((1, 2))  # each frame's crop corner
        assert np.ptp(rows) <= 10 and np.ptp(cols) <= 10, "at most +-jitter around one crop"
        assert (np.diff(clip[:, :, :, 1], axis=1) == 1).all(), "still a contiguous crop in every frame"
        moved |= np.ptp(rows) > 0 or np.ptp(cols) > 0
    assert moved


def test_sampler_state_replays_the_same_clips(videos):
    sampler = ClipSampler(videos, 2, (1, 2), crop=64, seed=3)
    state = sampler.state()
    first = sampler.batch(2)
    sampler.load_state(state)
    assert np.array_equal(first, sampler.batch(2))


def test_sampler_errors_are_clear(videos):
    with pytest.raises(VosLabError, match="crop 200 is larger"):
        ClipSampler(videos, 2, (1,), crop=200)
    with pytest.raises(VosLabError, match="frames a clip needs"):
        ClipSampler(videos, 4, (8,), crop=32)


def test_quantisation_maps_centres_to_themselves(videos):
    centres = torch.from_numpy(fit_ab_centres(np.stack([v.frames for v in videos]), clusters=16))
    assert centres.shape == (16, 2)
    ab = centres.T.reshape(1, 2, 4, 4)
    assert torch.equal(quantise_ab(ab, centres).flatten(), torch.arange(16))


def test_channel_dropout_drops_one_or_two_channels_per_sample():
    inputs = torch.ones(64, 3, 3, 5, 5)
    out = channel_dropout(inputs, probability=1.0, generator=torch.Generator().manual_seed(0))
    zero = (out[:, :, :, 0, 0] == 0)  # (B, T, 3)
    assert (zero == zero[:, :1]).all(), "the same channels in every frame of a sample"
    dropped = zero[:, 0].sum(1)
    assert set(dropped.tolist()) == {1, 2}
    assert torch.allclose(out[:, 0].sum((1, 2, 3)) / 25, torch.full((64,), 3.0)), "kept channels rescaled"
    assert torch.equal(channel_dropout(inputs, 0.0), inputs)


@pytest.mark.parametrize("variant,channels,length", [("vondrick", 1, 4), ("bottleneck", 3, 2)])
def test_colourisation_loss_learns(videos, variant, channels, length):
    torch.manual_seed(0)
    method = ColourisationMethod(variant=variant, **SMALL)
    sampler = ClipSampler(videos, method.clip_length, method.gaps, crop=64)
    method.fit(np.stack([v.frames[0] for v in videos]))
    batch = method.prepare(sampler.batch(2), torch.device("cpu"))
    assert batch["inputs"].shape == (2, length, channels, 64, 64)
    loss, logs = method.loss(batch, 0)
    assert loss.requires_grad and np.isfinite(logs["loss"]) and 0 <= logs["colour_acc"] <= 1
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    method.eval()  # no dropout: the same batch, a loss that must go down
    first = method.loss(batch, 0)[0].item()
    for _ in range(15):
        optimizer.zero_grad()
        method.loss(batch, 0)[0].backward()
        optimizer.step()
    assert method.loss(batch, 0)[0].item() < first


def test_cosine_pointer_ignores_feature_length():
    torch.manual_seed(0)
    features, classes = torch.randn(2, 4, 8, 5, 5), torch.randint(0, 16, (2, 4, 5, 5))
    cosine = ColourisationMethod(cosine=True, temperature=0.1, **SMALL)
    scaled = features * torch.rand(2, 4, 1, 5, 5).add(0.5)  # every feature vector gets another length
    assert torch.allclose(cosine.predict_colours(features, classes), cosine.predict_colours(scaled, classes),
                          atol=1e-5)
    dot = ColourisationMethod(**SMALL)  # the papers' pointer: lengths matter
    assert not torch.allclose(dot.predict_colours(features, classes), dot.predict_colours(scaled, classes),
                              atol=1e-3)


def test_profiles_choose_the_training_pointer():
    from vos_lab.profiles import get_profile
    from vos_lab.training.run import method_for_profile

    cpu = method_for_profile("colourisation", get_profile("cpu")).config
    assert (cpu["cosine"], cpu["temperature"]) == (True, 0.1)
    gpu = method_for_profile("colourisation", get_profile("gpu")).config
    assert (gpu["cosine"], gpu["temperature"]) == (False, 1.0), "the gpu profile trains the papers' version"
    assert "cosine" not in method_for_profile("mast", get_profile("cpu")).config
    assert not method_for_profile("colourisation", get_profile("cpu"), cosine=False).config["cosine"]
    assert get_profile("gpu").crop_jitter == 0, "the gpu profile samples clips as the papers do"
    assert (cpu["lr_schedule"], gpu["lr_schedule"]) == ("cosine", "constant")
    assert method_for_profile("mast", get_profile("cpu")).config["lr_schedule"] == "cosine"


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_interrupted_training_resumes_exactly(videos, tmp_path, schedule):
    def run(out, stop_at=None):
        torch.manual_seed(123)
        method = ColourisationMethod(variant="bottleneck", lr_schedule=schedule, **SMALL)
        loss = method.loss

        def interrupted(batch, step):
            if step == stop_at:
                raise KeyboardInterrupt
            return loss(batch, step)

        method.loss = interrupted
        sampler = ClipSampler(videos, method.clip_length, method.gaps, crop=64, seed=0)
        return train(method, sampler, out, TrainConfig(steps=6, batch_size=2, checkpoint_seconds=0.0),
                     progress=False)

    straight = run(tmp_path / "straight.pt")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed.pt", stop_at=3)
    assert load_checkpoint(tmp_path / "resumed.pt")["step"] == 3
    resumed = run(tmp_path / "resumed.pt")
    assert resumed.step == straight.step == 6
    assert [h["step"] for h in resumed.history] == list(range(1, 7))
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history])
    for a, b in zip(straight.method.state_dict().values(), resumed.method.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_cosine_schedule_decays_to_zero_and_the_loop_follows_it(videos, tmp_path):
    assert learning_rate(1e-3, "constant", 5, 10) == 1e-3
    rates = [learning_rate(1e-3, "cosine", step, 10) for step in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[5] == pytest.approx(5e-4) and rates[10] == pytest.approx(0)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    seen = []
    step_of_adam = torch.optim.Adam.step

    def record(optimizer, *args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return step_of_adam(optimizer, *args, **kwargs)

    method = ColourisationMethod(variant="bottleneck", lr_schedule="cosine", **SMALL)
    sampler = ClipSampler(videos, method.clip_length, method.gaps, crop=64, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.Adam, "step", record)
        train(method, sampler, tmp_path / "c.pt", TrainConfig(steps=10, batch_size=2), progress=False)
    assert seen == pytest.approx(rates[:10])
    with pytest.raises(VosLabError, match="lr_schedule='step': expected one of constant, cosine"):
        ColourisationMethod(lr_schedule="step", **SMALL)


KILL_SCRIPT = """
import sys, torch
from vos_lab.methods.colourisation import ColourisationMethod
from vos_lab.data.clips import ClipSampler, synthetic_videos
from vos_lab.training.loop import TrainConfig, train
torch.set_num_threads(1)
method = ColourisationMethod(variant="vondrick", width=8, multipliers=(1, 2, 2, 2), embed_dim=16)
sampler = ClipSampler(synthetic_videos(2, 10, 96, 128, seed=0), method.clip_length, method.gaps, crop=64)
result = train(method, sampler, sys.argv[1], TrainConfig(steps=int(sys.argv[2]), batch_size=2,
               checkpoint_seconds=0.0), progress=False)
print(result.step)
"""


def test_killed_training_loses_nothing(tmp_path):
    out, steps = tmp_path / "ckpt.pt", 40
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), str(steps)])
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and load_checkpoint(out)["step"] >= 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(out)["step"]
    assert 3 <= killed_at < steps, "killed mid-run"
    finished = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(out), str(steps)], capture_output=True,
                              text=True, check=True)
    assert finished.stdout.strip() == str(steps)
    state = load_checkpoint(out)
    assert state["step"] == steps and [h["step"] for h in state["history"]] == list(range(1, steps + 1))


def test_checkpoint_of_another_config_is_retrained_and_says_why(videos, tmp_path, capsys):
    out = tmp_path / "c.pt"
    method = ColourisationMethod(variant="vondrick", **SMALL)
    load_or_train(method, lambda: ClipSampler(videos, 4, (1,), crop=64), out, TrainConfig(2, 2), progress=False)
    other = ColourisationMethod(variant="bottleneck", **SMALL)
    load_or_train(other, lambda: ClipSampler(videos, 2, (1,), crop=64), out, TrainConfig(2, 2), progress=False)
    assert "training anew, the checkpoint was trained otherwise (variant: 'vondrick' != 'bottleneck')" in \
        capsys.readouterr().out
    assert load_checkpoint(out)["config"]["variant"] == "bottleneck"
    again = load_or_train(ColourisationMethod(variant="bottleneck", **SMALL), lambda: pytest.fail("must not train"),
                          out, TrainConfig(2, 2), progress=False)
    assert again.step == 2 and capsys.readouterr().out == ""


def test_checkpoint_holds_the_trained_weights(videos, tmp_path):
    out = tmp_path / "c.pt"
    method = ColourisationMethod(variant="bottleneck", **SMALL)
    initial = {name: weight.clone() for name, weight in method.named_parameters()}
    result = train(method, ClipSampler(videos, 2, (1,), crop=64), out, TrainConfig(2, 2), progress=False)
    trained = dict(result.method.named_parameters())
    for name, weight in load_method(out).named_parameters():
        assert torch.equal(weight, trained[name]) and not torch.equal(weight, initial[name]), name
    frame = videos[0].frames[0]
    with torch.no_grad():
        features = load_encoder(out).encode(frame)
        assert torch.equal(features, result.method.frame_encoder().encode(frame))
    assert features.shape == (1, 16, 12, 16)
    assert torch.allclose(features.norm(dim=1), torch.ones(1, 12, 16), atol=1e-4)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(VosLabError, match="not a readable checkpoint"):
        load_encoder(bad)


def test_periodic_validation_is_recorded_and_resumed(videos, synthetic_root, tmp_path):
    from vos_lab.data.davis import DavisDataset
    from vos_lab.evaluation import validation_jf

    dataset = DavisDataset(synthetic_root)
    evaluate = validation_jf(dataset, dataset.names[:1], max_frames=4)
    out = tmp_path / "v.pt"
    method = ColourisationMethod(variant="bottleneck", **SMALL)
    sampler = ClipSampler(videos, 2, (1,), crop=64)
    result = train(method, sampler, out, TrainConfig(3, 2, eval_every=2), evaluate=evaluate, progress=False)
    assert [e["step"] for e in result.evaluations] == [2, 3]  # every 2 steps, and at the end
    assert all(0.0 <= e["J&F"] <= 1.0 and e["J&F"] == pytest.approx((e["J"] + e["F"]) / 2) for e in result.evaluations)
    assert load_checkpoint(out)["evaluations"] == result.evaluations


def test_train_cli_validates_on_davis(synthetic_root, tmp_path, capsys):
    from vos_lab.cli import main

    out = tmp_path / "cli.pt"
    assert main(["train", "colourisation", "--variant", "bottleneck", "--profile", "smoke", "--steps", "2",
                 "--val", str(synthetic_root), "--val-sequences", "1", "--val-frames", "3", "--out", str(out)]) == 0
    assert "validation at step 2: J&F" in capsys.readouterr().out
    assert load_checkpoint(out)["data"] == "embedded"  # a loaded model can say what it was trained on
    assert main(["train", "colourisation", "--profile", "smoke", "--val", str(tmp_path / "nowhere"),
                 "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err


def test_train_cli_accepts_the_american_spelling(tmp_path, capsys):
    from vos_lab.cli import main

    out = tmp_path / "alias.pt"
    assert main(["train", "colorization", "--variant", "bottleneck", "--profile", "smoke", "--steps", "1",
                 "--out", str(out)]) == 0
    config = load_checkpoint(out)["config"]
    assert config["method"] == "colourisation" and config["variant"] == "bottleneck"


@pytest.mark.parametrize(("method", "option", "accepts"), [
    ("corrflow", "radius=abc", "radius='abc': expected an integer >= 0"),
    ("mast", "radius=1.5", "radius=1.5: expected an integer >= 0"),
    ("mast", "lr=abc", "lr='abc': expected a number > 0"),
    ("corrflow", "lr=-1", "lr=-1: expected a number > 0"),
    ("corrflow", "sampling=maybe", "sampling='maybe': expected True or False"),
    ("corrflow", "dropout=1.5", "dropout=1.5: expected a number >= 0 and <= 1"),
    ("colourisation", "multipliers=(1,)", "multipliers=(1,): expected a tuple of 2 to 4 integers >= 1"),
])
def test_train_option_values_are_checked_before_anything_is_written(tmp_path, capsys, method, option, accepts):
    from vos_lab.cli import main

    out = tmp_path / "run" / "m.pt"
    code = main(["train", method, "--profile", "smoke", "--steps", "1", "--option", option, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"error: {method} option {accepts} ("), err
    assert "Traceback" not in err and not list(tmp_path.iterdir()), "nothing written"


WRONG_TYPE = {bool: "maybe", int: 1.5, float: "abc", str: 3, tuple: "x"}


@pytest.mark.parametrize("name", METHODS)
def test_every_option_of_every_method_refuses_another_type(name):
    small = {key: value for key, value in SMALL.items() if key in METHODS[name].options}  # CNN sizes (not INO's)
    for key, default in METHODS[name].defaults.items():
        with pytest.raises(VosLabError, match=f"^{name} option {key}=.*: expected "):
            METHODS[name](**{**small, key: WRONG_TYPE[type(default)]})


def test_options_accept_their_spellings():
    config = CorrFlowMethod(**{**SMALL, "multipliers": [1, 2, 2]}, sampling="false", lr=1, radius=0).config
    assert (config["sampling"], config["lr"], config["multipliers"], config["radius"]) == (False, 1.0, (1, 2, 2), 0)
    assert type(config["lr"]) is float
    assert CorrFlowMethod(**SMALL, sampling=True, cycle_weight=0).config["sampling"] is True


def test_profile_overrides_are_checked():
    assert get_profile("cpu", train_minutes=5, eval_sequences=None, lr_schedule="constant").train_minutes == 5.0
    for field, value, accepts in [("crop_jitter", "abc", "an integer >= 0"), ("train_steps", -1, "an integer >= 0"),
                                  ("lr_schedule", "step", "one of constant, cosine"),
                                  ("cosine_pointer", "x", "True or False"), ("crop_size", None, "an integer >= 0")]:
        with pytest.raises(VosLabError, match=f"^profile field {field}=.*: expected {accepts} \\(see vos_lab"):
            get_profile("cpu", **{field: value})


def test_train_variant_is_given_one_way(tmp_path, capsys):
    from vos_lab.cli import main

    assert main(["train", "colourisation", "--option", "variant=rgb", "--out", str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err == "error: --option variant: give the variant with --variant\n"


def test_train_cli_refuses_a_checkpoint_trained_otherwise_unless_replace(tmp_path, capsys):
    from vos_lab.cli import main

    out = tmp_path / "m.pt"
    common = ["train", "mast", "--profile", "smoke", "--steps", "1", "--out", str(out)]
    assert main(common) == 0
    first = out.read_bytes()
    assert main([*common, "--seed", "1"]) == 2
    assert "trained otherwise (seed: 0 != 1)" in capsys.readouterr().err
    assert out.read_bytes() == first  # nothing lost
    assert main([*common, "--seed", "1", "--replace"]) == 0
    assert load_checkpoint(out)["seed"] == 1


def test_profile_validates_periodically_with_real_step_numbers(tmp_path):
    from vos_lab.profiles import get_profile
    from vos_lab.training.run import train_from_profile

    def evaluate(encoder):  # a stand-in for validation_jf: the loop only records what it returns
        return {"J&F": 0.5, "J": 0.5, "F": 0.5}

    profile = get_profile("smoke")
    result = train_from_profile("colourisation", profile, tmp_path / "p.pt", steps=4, minutes=None,
                                evaluate=evaluate, progress=False, variant="bottleneck")
    assert profile.eval_every == 2 and [e["step"] for e in result.evaluations] == [2, 4]  # a curve, not one point
    assert [h["step"] for h in result.history] == [1, 2, 3, 4]  # logs carry the optimiser step
    assert get_profile("cpu").eval_every and get_profile("cpu").train_steps // get_profile("cpu").eval_every >= 4
