"""Third-party-style ONNX models of the kinds users bring, built here with no downloads, each
with the data it is judged on: torchvision architectures exported at opset 11 and 13 without
constant folding, weights as Constant nodes, unfolded BatchNorm, a weight shared by two nodes,
external data files, dynamic batch and spatial dims, two inputs, int64 token ids, a
scikit-learn model (label + probabilities outputs), an embedding model without labels, a
transformer encoder, a detection-style head with two outputs, and a real trained model from
outside: Silero VAD from the wheel of the `silero-vad` package (a test dependency)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _export(net, args, path: Path, opset: int, names, outputs, dynamic) -> None:
    import torch

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), args, f, dynamo=False, opset_version=opset,
                          do_constant_folding=False, input_names=names, output_names=outputs,
                          dynamic_axes=dynamic)  # fmt: skip
    path.write_bytes(f.getvalue())


def _constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every initializer moved into a Constant node, as some exporters write weights."""
    nodes = [helper.make_node("Constant", [], [t.name], value=t) for t in model.graph.initializer]
    del model.graph.initializer[:]
    rest = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + rest)
    return model


def _bn_stats_(net) -> None:
    """Non-trivial BatchNorm statistics, so that folding them matters."""
    import torch

    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)


def _labels(scores: np.ndarray, rng) -> np.ndarray:
    """Labels the model mostly gets right (its own top-1, 10 % flipped): a trained-like model."""
    y = scores.argmax(axis=1)
    flip = rng.random(len(y)) < 0.1
    y[flip] = rng.integers(0, scores.shape[1], flip.sum())
    return y.astype(np.int64)


def _run(path: Path, feed: dict, output: int = 0) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, feed)[output]


def mobilenet_opset11_constants(d: Path) -> dict:
    """torchvision MobileNetV3-Small, opset 11, weights in Constant nodes, BN unfolded, dynamic
    batch, height and width."""
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    _bn_stats_(net)
    _export(net, (torch.randn(1, 3, 32, 32),), d / "model.onnx", 11, ["image"], ["scores"],
            {"image": {0: "n", 2: "h", 3: "w"}})  # fmt: skip
    onnx.save(_constants(onnx.load(d / "model.onnx")), d / "model.onnx")
    x = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    y = _labels(_run(d / "model.onnx", {"image": x}), np.random.default_rng(1))
    return {"x_test": x[:40], "y_test": y[:40], "x_calib": x[40:]}


def shufflenet_opset13(d: Path) -> dict:
    """torchvision ShuffleNetV2 x0.5, opset 13, no constant folding, dynamic batch and size."""
    import torch
    import torchvision

    torch.manual_seed(1)
    net = torchvision.models.shufflenet_v2_x0_5(num_classes=10)
    _bn_stats_(net)
    _export(net, (torch.randn(1, 3, 32, 32),), d / "model.onnx", 13, ["input"], ["logits"],
            {"input": {0: "batch", 2: "height", 3: "width"}})  # fmt: skip
    x = np.random.default_rng(2).standard_normal((64, 3, 32, 32)).astype(np.float32)
    y = _labels(_run(d / "model.onnx", {"input": x}), np.random.default_rng(3))
    return {"x_test": x[:40], "y_test": y[:40], "x_calib": x[40:]}


def shared_weight_mlp(d: Path) -> dict:
    """One weight matrix used by two MatMul nodes (a tied layer), written with onnx.helper."""
    rng = np.random.default_rng(4)
    w = numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32) * 0.3, "tied")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 5)).astype(np.float32) * 0.3, "head")
    nodes = [
        helper.make_node("MatMul", ["x", "tied"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "tied"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("MatMul", ["a2", "head"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])], [w, w2],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              d / "model.onnx")  # fmt: skip
    x = rng.standard_normal((160, 32)).astype(np.float32)
    y = _labels(_run(d / "model.onnx", {"x": x}), rng)
    return {"x_test": x[:100], "y_test": y[:100], "x_calib": x[100:]}


def external_data_cnn(d: Path) -> dict:
    """A small CNN whose weights live in an external data file beside it."""
    import torch

    torch.manual_seed(5)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 4),
    )  # fmt: skip
    _export(net, (torch.randn(1, 1, 12, 12),), d / "tmp.onnx", 13, ["x"], ["y"],
            {"x": {0: "n"}})  # fmt: skip
    model = onnx.load(d / "tmp.onnx")
    (d / "tmp.onnx").unlink()
    onnx.save(model, d / "model.onnx", save_as_external_data=True, location="weights.bin",
              size_threshold=0)  # fmt: skip
    x = np.random.default_rng(6).standard_normal((100, 1, 12, 12)).astype(np.float32)
    y = _labels(_run(d / "model.onnx", {"x": x}), np.random.default_rng(7))
    return {"x_test": x[:60], "y_test": y[:60], "x_calib": x[60:]}


def two_inputs(d: Path) -> dict:
    """An image and a feature vector, concatenated into one classifier head."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.fc = torch.nn.Linear(8 + 6, 3)

        def forward(self, image, features):
            h = torch.relu(self.conv(image)).mean(dim=(2, 3))  # (N, 8)
            return self.fc(torch.cat([h, features], dim=1))

    torch.manual_seed(8)
    _export(Net(), (torch.randn(1, 3, 10, 10), torch.randn(1, 6)), d / "model.onnx", 13,
            ["image", "features"], ["scores"], {"image": {0: "n"}, "features": {0: "n"}})  # fmt: skip
    rng = np.random.default_rng(9)
    img = rng.standard_normal((120, 3, 10, 10)).astype(np.float32)
    feat = rng.standard_normal((120, 6)).astype(np.float32)
    y = _labels(_run(d / "model.onnx", {"image": img, "features": feat}), rng)
    return {"x_test.image": img[:80], "x_test.features": feat[:80], "y_test": y[:80],
            "x_calib.image": img[80:], "x_calib.features": feat[80:]}  # fmt: skip


def token_classifier(d: Path) -> dict:
    """A text classifier on int64 token ids: embedding, mean pooling, two linear layers."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(500, 32)
            self.fc1, self.fc2 = torch.nn.Linear(32, 64), torch.nn.Linear(64, 4)

        def forward(self, input_ids):
            return self.fc2(torch.relu(self.fc1(self.emb(input_ids).mean(dim=1))))

    torch.manual_seed(10)
    ids = torch.zeros(1, 16, dtype=torch.int64)
    _export(Net(), (ids,), d / "model.onnx", 13, ["input_ids"], ["logits"],
            {"input_ids": {0: "batch", 1: "tokens"}})  # fmt: skip
    rng = np.random.default_rng(11)
    x = rng.integers(0, 500, (150, 16)).astype(np.int64)
    y = _labels(_run(d / "model.onnx", {"input_ids": x}), rng)
    return {"x_test": x[:100], "y_test": y[:100], "x_calib": x[100:]}


def sklearn_mlp(d: Path) -> dict:
    """scikit-learn's MLPClassifier on the breast-cancer features, converted by skl2onnx: a
    `label` and a `probabilities` output (ZipMap off); the prediction is `probabilities`."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    rng = np.random.default_rng(12)
    idx = rng.permutation(len(x))
    train, calib, test = idx[:300], idx[300:400], idx[400:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=300, random_state=0))
        clf.fit(x[train], y[train])
    model = to_onnx(clf, x[:1], options={"zipmap": False}, target_opset=13)
    onnx.save(model, d / "model.onnx")
    return {"x_test": x[test], "y_test": y[test].astype(np.int64), "x_calib": x[calib]}


def embedding_model(d: Path) -> dict:
    """A sentence-embedding-like MLP with an L2-normalized 24-d output and no labels: judged by
    fidelity (cosine similarity) to the baseline's embeddings."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.GELU(),
                                            torch.nn.Linear(64, 24))  # fmt: skip

        def forward(self, x):
            return torch.nn.functional.normalize(self.body(x), dim=-1)

    torch.manual_seed(13)
    _export(Net(), (torch.randn(1, 40),), d / "model.onnx", 13, ["features"], ["embedding"],
            {"features": {0: "n"}})  # fmt: skip
    x = np.random.default_rng(14).standard_normal((120, 40)).astype(np.float32)
    return {"x_test": x[:80], "x_calib": x[80:]}


def transformer_encoder(d: Path) -> dict:
    """A 2-layer nn.TransformerEncoder over 8 tokens of 32 features, mean-pooled into 6 classes
    (opset 14: attention as MatMul/Softmax, LayerNorm decomposed)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
            self.enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = torch.nn.Linear(32, 6)

        def forward(self, x):
            return self.head(self.enc(x).mean(dim=1))

    torch.manual_seed(15)
    _export(Net(), (torch.randn(1, 8, 32),), d / "model.onnx", 14, ["tokens"], ["logits"],
            {"tokens": {0: "n"}})  # fmt: skip
    x = np.random.default_rng(16).standard_normal((120, 8, 32)).astype(np.float32)
    y = _labels(_run(d / "model.onnx", {"tokens": x}), np.random.default_rng(17))
    return {"x_test": x[:80], "y_test": y[:80], "x_calib": x[80:]}


def detection_head(d: Path) -> dict:
    """A detection-style head with two outputs, 8 anchor boxes (N, 8, 4) and their scores
    (N, 8): judged on `boxes` by fidelity (its outputs are coordinates, not class scores)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())  # fmt: skip
            self.boxes, self.scores = torch.nn.Linear(16, 32), torch.nn.Linear(16, 8)

        def forward(self, image):
            h = self.body(image)
            return self.boxes(h).reshape(-1, 8, 4), torch.sigmoid(self.scores(h))

    torch.manual_seed(18)
    _export(Net(), (torch.randn(1, 3, 16, 16),), d / "model.onnx", 13, ["image"],
            ["boxes", "scores"], {"image": {0: "n"}})  # fmt: skip
    x = np.random.default_rng(19).standard_normal((100, 3, 16, 16)).astype(np.float32)
    return {"x_test": x[:60], "x_calib": x[60:]}


def _speech_like(n: int, rng) -> np.ndarray:
    """(n, 512) chunks at 16 kHz: voiced ones (a harmonic series on a 100-300 Hz pitch, formant-
    like weights, a syllable envelope) alternating with noise of varying level."""
    t = np.arange(512) / 16000
    out = []
    for i in range(n):
        if i % 2 == 0:
            f0 = rng.uniform(100, 300)
            sig = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 20))
            sig = 0.3 * sig * np.hanning(512) + rng.normal(0, 0.01, 512)
        else:
            sig = rng.normal(0, rng.uniform(0.001, 0.1), 512)
        out.append(sig.astype(np.float32))
    return np.stack(out)


def silero(variant: str):
    """Silero VAD as its wheel ships it (a real trained model from outside; stateful: a
    (2, 1, 128) `state` and an int64 scalar `sr` fed whole to every call as `x_fixed.*`),
    judged by fidelity to its fp32 speech probabilities on synthesized speech-like chunks."""

    def build(d: Path) -> dict:
        import shutil

        import silero_vad

        shutil.copy(Path(silero_vad.__file__).parent / "data" / variant, d / "model.onnx")
        x = _speech_like(120, np.random.default_rng(20))
        return {"x_test.input": x[:80], "x_calib.input": x[80:],
                "x_fixed.state": np.zeros((2, 1, 128), np.float32),
                "x_fixed.sr": np.array(16000, np.int64)}  # fmt: skip

    return build


CORPUS = {  # name -> (builder, source options)
    "mobilenet_v3 opset 11, Constant weights, BN unfolded": (mobilenet_opset11_constants, {}),
    "shufflenet_v2 opset 13, dynamic batch/H/W": (shufflenet_opset13, {}),
    "MLP with a weight shared by two MatMuls": (shared_weight_mlp, {}),
    "CNN with external data": (external_data_cnn, {}),
    "two inputs (image + features)": (two_inputs, {}),
    "text classifier on int64 token ids": (token_classifier, {}),
    "scikit-learn MLP via skl2onnx": (sklearn_mlp, {"output": "probabilities"}),
    "embedding model, no labels": (embedding_model, {"metric": "fidelity"}),
    "transformer encoder": (transformer_encoder, {}),
    "detection head, two outputs (boxes chosen)": (detection_head, {"output": "boxes"}),
    "Silero VAD (wheel), opset 18, stateful": (silero("silero_vad_op18_ifless.onnx"), {}),
    "Silero VAD (wheel), opset 15, If nodes": (silero("silero_vad_16k_op15.onnx"), {}),
}  # fmt: skip
