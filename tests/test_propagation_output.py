"""`propagate_dataset` writes each sequence all or nothing: a failure never leaves a half-written sequence."""

import pytest

from vos_lab.data.davis import DavisDataset, DavisSequence
from vos_lab.errors import VosLabError
from vos_lab.evaluation import propagate_dataset
from vos_lab.features import build_encoder
from vos_lab.propagation import PropagationConfig


def test_a_failed_sequence_leaves_no_partial_folder(synthetic_root, tmp_path, monkeypatch):
    dataset = DavisDataset(synthetic_root)
    first, second = dataset.names
    out = tmp_path / "results"
    frames = [f"{t:05d}.png" for t in range(8)]
    read_frame = DavisSequence.frame

    def failing(sequence, index):
        if sequence.name == second and index == 3:
            raise VosLabError("frame 3 unreadable")
        return read_frame(sequence, index)

    with monkeypatch.context() as patch:
        patch.setattr(DavisSequence, "frame", failing)
        with pytest.raises(VosLabError, match="frame 3 unreadable"):
            propagate_dataset(build_encoder("lab"), dataset, out, PropagationConfig(), progress=False)
    assert [p.name for p in out.iterdir()] == [first], "no partial sequence and no temporary folder left"
    assert sorted(p.name for p in (out / first).iterdir()) == frames, "the complete sequence stays"

    (out / first / "99999.png").write_bytes(b"stale")  # a rerun replaces a sequence's previous result whole
    run = propagate_dataset(build_encoder("lab"), dataset, out, PropagationConfig(), progress=False)
    assert run.sequences == [first, second] and run.frames == 16
    assert sorted(p.name for p in out.iterdir()) == sorted([first, second])
    assert all(sorted(p.name for p in (out / name).iterdir()) == frames for name in (first, second))
