import pytest
import torch

from pipeline.errors import ConfigError, is_transient
from pipeline.engine import Predictor, resolve_device

from .conftest import identity_handle


class _FlakyOOM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        if x.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x * 10


def test_out_of_memory_halves_the_batch_until_it_fits():
    mod = _FlakyOOM()
    pred = Predictor(mod, identity_handle().spec, torch.device("cpu"))
    x = torch.rand(8, 3, 32, 32)
    out = pred(x)
    torch.testing.assert_close(out, torch.softmax(x * 10, 1))
    assert pred.oom_splits == 3
    assert mod.calls == [8, 4, 2, 2, 4, 2, 2]


def test_other_errors_are_not_swallowed():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        Predictor(Broken(), identity_handle().spec, torch.device("cpu"))(torch.rand(2, 3, 32, 32))


def test_tta_averages_flips_back_into_place():
    x = torch.rand(2, 3, 32, 32)
    pred = Predictor(torch.nn.Identity(), identity_handle().spec, torch.device("cpu"), tta=True)
    torch.testing.assert_close(pred(x), torch.softmax(x, 1))


def test_sigmoid_model_gives_two_class_probabilities():
    from pipeline.spec import ModelSpec

    spec = ModelSpec(1, (1,), ("background", "water"), activation="sigmoid", tile=64, overlap=0)
    x = torch.tensor([[[[-2.0, 0.0, 3.0]]]])
    p = Predictor(torch.nn.Identity(), spec, torch.device("cpu"))(x)
    torch.testing.assert_close(p[:, 1], torch.sigmoid(x[:, 0]))
    torch.testing.assert_close(p.sum(1), torch.ones(1, 1, 3))


@pytest.mark.parametrize("bad", ["tpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_unusable_device_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="device"):
        resolve_device(bad)


def test_retry_table():
    from pipeline.errors import CheckpointError, InputError, TransientError

    assert is_transient(RuntimeError("CUDA out of memory"))
    assert is_transient(OSError(5, "Input/output error"))
    assert is_transient(TransientError("flaky NFS"))
    assert not is_transient(InputError("scene.tif: not a raster"))
    assert not is_transient(CheckpointError("model: mismatch"))
    assert not is_transient(FileNotFoundError("scene.tif"))
    assert not is_transient(ValueError("a bug"))


def test_collected_warnings_records_segpipe_ones_and_reemits_all_even_on_failure():
    import warnings

    from pipeline.errors import SegpipeWarning, collected_warnings

    with pytest.warns(SegpipeWarning, match="no CRS"), pytest.warns(UserWarning, match="other"):
        with collected_warnings() as msgs:
            warnings.warn("scene.tif: has no CRS", SegpipeWarning)
            warnings.warn("some other library's warning", UserWarning)
    assert msgs == ["scene.tif: has no CRS"]
    with pytest.warns(SegpipeWarning, match="NaN"), pytest.raises(RuntimeError):
        with collected_warnings():
            warnings.warn("scene.tif: 3 NaN pixels", SegpipeWarning)
            raise RuntimeError("failed later")
