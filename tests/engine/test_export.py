import pytest
import torch
from torch import nn

from vidrec.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidrec.engine.export import example_inputs, export_model, run_exported, run_onnx
from vidrec.models.lrcn import LRCN

K = 5


def tiny_encoder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class TinySingleFrame(nn.Module):
    """Single-frame CNN: per-frame logits averaged over time -> (B, K)."""

    modalities = ("rgb",)
    num_classes = K

    def __init__(self):
        super().__init__()
        self.cnn = nn.Sequential(tiny_encoder(), nn.Linear(8, K))

    def forward(self, x):  # (B, T, C, H, W)
        b, t = x.shape[:2]
        return self.cnn(x.flatten(0, 1)).view(b, t, -1).mean(1)  # (B, K)


def tiny_lrcn() -> LRCN:
    return LRCN(encoder=tiny_encoder(), rnn=nn.LSTM(8, 16, batch_first=True), head=nn.Linear(16, K))


def reference(model, xs):
    """The model on the training normalisation of uint8 pixels, written out: (x / 255 - mean) / std."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    xs = [(x.float() / 255 - mean) / std if x.dtype == torch.uint8 else x for x in xs]
    with torch.no_grad():
        return model.eval()(*xs).softmax(-1).reshape(xs[0].shape[0], -1, K).mean(1)


@pytest.mark.parametrize("make", [TinySingleFrame, tiny_lrcn], ids=["single_frame", "lrcn"])
def test_onnx_parity_and_dynamic_batch(tmp_path, make):
    torch.manual_seed(0)
    model = make().eval()
    path = export_model(model, example_inputs(model, frames=3, size=32), tmp_path / "m.onnx", fmt="onnx")
    xs = example_inputs(model, frames=3, size=32, batch=5)  # a batch size not seen at export
    torch.testing.assert_close(run_onnx(path, xs), reference(model, xs), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("make", [TinySingleFrame, tiny_lrcn], ids=["single_frame", "lrcn"])
def test_torch_export_parity(tmp_path, make):
    torch.manual_seed(0)
    model = make().eval()
    path = export_model(model, example_inputs(model, frames=3, size=32), tmp_path / "m.pt2", fmt="export")
    xs = example_inputs(model, frames=3, size=32, batch=3)
    torch.testing.assert_close(run_exported(path, xs), reference(model, xs), atol=1e-5, rtol=1e-5)


def test_unknown_format_and_missing_channels(tmp_path):
    model = TinySingleFrame()
    with pytest.raises(ValueError, match="onnx"):
        export_model(model, example_inputs(model, frames=2, size=16), tmp_path / "x", fmt="tflite")
    model.modalities = ("flow",)
    with pytest.raises(ValueError, match="flow=20"):
        example_inputs(model, frames=2, size=16)


def test_export_takes_uint8_pixels_or_documented_float(tmp_path):
    torch.manual_seed(0)
    model = TinySingleFrame().eval()
    xs = example_inputs(model, frames=3, size=32, batch=3)
    assert xs[0].dtype == torch.uint8
    path = export_model(model, xs, tmp_path / "m.onnx", fmt="onnx")
    torch.testing.assert_close(run_onnx(path, xs), reference(model, xs), atol=1e-4, rtol=1e-4)
    floats = example_inputs(model, frames=3, size=32, batch=3, uint8_rgb=False)
    path = export_model(model, floats, tmp_path / "f.onnx", fmt="onnx", normalize=False)
    torch.testing.assert_close(run_onnx(path, floats), reference(model, floats), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="uint8 pixels"):
        export_model(model, floats, tmp_path / "x.onnx", fmt="onnx")


def test_flow_stacks_in_pixels_are_normalised_in_the_graph():
    """Deployment keeps taking flow in pixels; the graph divides it as the dataset does (px / 9.04)."""
    from vidrec.data.transforms import FLOW_PX_SCALE
    from vidrec.engine.export import ProbabilityModel

    torch.manual_seed(0)
    model = TinySingleFrame().eval()
    model.cnn[0][0] = nn.Conv2d(2, 8, 3, stride=2)  # one flow field (L = 1): 2 channels
    model.modalities = ("flow",)
    px = torch.randn(2, 3, 2, 16, 16) * 5
    with torch.no_grad():
        graph = ProbabilityModel(model, normalize=True)(px)
        fed = ProbabilityModel(model, normalize=False)(px / FLOW_PX_SCALE)
        raw = ProbabilityModel(model, normalize=False)(px)
    torch.testing.assert_close(graph, fed)
    assert not torch.allclose(graph, raw)
