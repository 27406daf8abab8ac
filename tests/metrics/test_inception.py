"""The FID Inception-v3: the standard file's key names and shapes, loading, outputs, the TF resize, errors."""

import numpy as np
import pytest
import torch

from gankit.errors import UserError
from gankit.metrics import inception
from gankit.metrics.features import inception_extractor, inception_input
from gankit.metrics.inception import FIDInceptionV3, load_inception, resize_bilinear_tf
from tests.tiny import sagan_config

# A few entries of pt_inception-2015-12-05-6726825d.pth (the TF graph converted by pytorch-fid).
STANDARD_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch3x3dbl_1.conv.weight": (448, 2048, 1, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A random state dict with the standard file's names and shapes, saved as a plain .pth (no counters)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith(("bn.weight",)):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.05
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(state, path)
    return path, state


def test_the_network_has_the_standard_files_names_shapes_and_size():
    state = FIDInceptionV3().state_dict()
    assert len(state) == 566  # 94 conv+BN units x 6 entries + fc weight and bias
    assert sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "tracked"))) == (
        23_850_960
    )
    for key, shape in STANDARD_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("AuxLogits" in k for k in state)


def test_loads_a_random_standard_state_dict_and_gives_2048_features_and_1008_logits(random_weights):
    path, state = random_weights
    net, found, sha = load_inception(path, download=False)
    assert found == path and len(sha) == 64 and not sha.startswith(inception.WEIGHTS_SHA256_PREFIX)
    assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        features, logits = net(x)
        _, unbiased = net(x[:1], unbiased_logits=True)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(features).all() and (features >= 0).all()  # pooled ReLU outputs
    torch.testing.assert_close(logits[:1] - unbiased, net.fc.bias[None], rtol=1e-4, atol=1e-4)
    ex = inception_extractor(net, str(path), sha)
    assert "not the standard FID weights" in ex.note  # a random file must never be reported as comparable


def test_weights_from_the_environment_variable_and_clear_errors(random_weights, tmp_path, monkeypatch):
    path, state = random_weights
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(path))
    assert inception.find_inception_weights() == path
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match="GANKIT_INCEPTION_WEIGHTS .* does not exist"):
        inception.find_inception_weights()
    wrong = tmp_path / "wrong.pth"
    torch.save({k: v for k, v in state.items() if k != "fc.bias"}, wrong)
    with pytest.raises(UserError, match="'fc.bias' is missing"):
        load_inception(wrong)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="not a readable weights file"):
        load_inception(truncated)


def test_offline_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def offline(url, **kwargs):
        calls.append((url, kwargs))
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="--inception-weights FILE or set GANKIT_INCEPTION_WEIGHTS") as exc:
        inception.find_inception_weights()
    assert "\n" not in str(exc.value) and inception.WEIGHTS_URL in str(exc.value)
    url, kwargs = calls[0]
    assert url.endswith("pt_inception-2015-12-05-6726825d.pth")
    assert kwargs["check_hash"] is True and kwargs["weights_only"] is True
    # a file already in the hub cache is used without any download
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    cached = tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    cached.write_bytes(b"x")
    assert inception.find_inception_weights() == cached


def test_tf_bilinear_resize_samples_without_half_pixel_offset():
    x = torch.tensor([[[[0.0, 10.0]]]])
    # TF1 (align_corners=False): output i samples input at i * in/out = i / 2; the last column clamps.
    assert resize_bilinear_tf(x, 4)[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]
    # (F.interpolate uses half-pixel centres and gives [0, 2.5, 7.5, 10] here.)
    img = torch.rand(1, 3, 16, 16)
    out = resize_bilinear_tf(img, 299)
    assert out.shape == (1, 3, 299, 299)
    torch.testing.assert_close(out[..., 0, 0], img[..., 0, 0])


def test_inception_input_quantises_to_8_bit_and_makes_rgb():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).view(1, 1, 1, 5)
    out = inception_input(x)
    assert out.shape == (1, 3, 1, 5)
    assert out[0, 0, 0].tolist() == [0.0, 64.0, 128.0, 255.0, 255.0]


def test_the_note_says_comparable_only_for_the_standard_weights_hash():
    net = FIDInceptionV3()
    note = inception_extractor(net, None, "6726825d" + "0" * 56).note
    assert "identical to torch-fidelity and the TF reference" in note and "pytorch-fid differs slightly" in note
    assert "not comparable" in inception_extractor(net, None, "f" * 64).note


def test_evaluate_cli_with_inception_features(random_weights, tmp_path, monkeypatch):
    import json

    import numpy as np

    from gankit.cli import main
    from gankit.data.digits import digits_tensor
    from gankit.models.registry import build_generator

    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = sagan_config(z_dim=8, d_attention_resolutions=(8, 4), num_classes=0)
    build_generator(cfg).save_export(tmp_path / "g.safetensors")
    images, _ = digits_tensor("test", 16, 1)
    np.savez(tmp_path / "real.npz", images=images[:6].numpy())
    out = tmp_path / "m.json"
    args = ["evaluate", "--checkpoint", str(tmp_path / "g.safetensors"), "--data", str(tmp_path / "real.npz")]
    args += ["--num", "6", "--features", "inception", "--inception-weights", str(random_weights[0])]
    assert main([*args, "--metrics", "fid,is,pr", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    f = r["features"]
    assert f["name"] == "inception" and f["num_features"] == 2048 and f["num_logits"] == 1008
    assert f["weights_sha256"] == inception.file_sha256(random_weights[0])
    assert "not the standard FID weights" in r["comparability"]
    assert r["metrics"]["fid"] > 0 and 1 <= r["metrics"]["is"] <= 6 and r["reference"]["num"] == 6


def tf1_resize_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF 1.x ``resize_bilinear`` (align_corners=False, no half-pixel centres) of one float32 ``(H, W)`` plane,
    written from TF's C++ kernel: float32 scale and positions (LegacyScaler), lower = floor, upper = min(ceil,
    in - 1), then top and bottom interpolated along x and the two along y."""

    def axis(in_size: int, out_size: int):
        scale = np.float32(in_size) / np.float32(out_size)
        pos = np.arange(out_size, dtype=np.float32) * scale
        lower = np.maximum(np.floor(pos).astype(np.int64), 0)
        upper = np.minimum(np.ceil(pos).astype(np.int64), in_size - 1)
        return lower, upper, (pos - np.floor(pos)).astype(np.float32)

    ylo, yhi, ylerp = axis(image.shape[0], out_h)
    xlo, xhi, xlerp = axis(image.shape[1], out_w)
    out = np.empty((out_h, out_w), np.float32)
    for y in range(out_h):
        top_left, top_right = image[ylo[y], xlo], image[ylo[y], xhi]
        bottom_left, bottom_right = image[yhi[y], xlo], image[yhi[y], xhi]
        top = top_left + (top_right - top_left) * xlerp
        bottom = bottom_left + (bottom_right - bottom_left) * xlerp
        out[y] = top + (bottom - top) * ylerp[y]
    return out


@pytest.mark.parametrize("shape", [(32, 32), (7, 5), (64, 48)])
def test_tf_bilinear_resize_is_bit_equal_to_the_tf1_kernel_in_float32(shape):
    levels = np.random.default_rng(sum(shape)).integers(0, 256, (2, 3, *shape)).astype(np.float32)
    out = resize_bilinear_tf(torch.from_numpy(levels), 299).numpy()
    for b in range(2):
        for c in range(3):
            np.testing.assert_array_equal(out[b, c], tf1_resize_reference(levels[b, c], 299, 299))
    # positions computed in float64 give other weights (by up to 1e-2 levels for large inputs): the
    # bit-equality above tells the two apart
    pos64 = np.arange(299) * (shape[0] / 299)
    pos32 = np.arange(299, dtype=np.float32) * np.float32(shape[0] / 299)
    assert ((pos64 - np.floor(pos64)).astype(np.float32) != pos32 - np.floor(pos32)).any()
