"""`gankit attention`: the SAGAN attention-map figure."""

import pytest
import torch
from PIL import Image

from gankit.apps.attention import attention_figure, attention_layers, query_grid
from gankit.cli import main
from gankit.errors import UserError
from gankit.models import SNGANGenerator
from tests.tiny import attentive_sagan, sngan_config


def _expected_rows(G, layer: str, rows: list[int], class_id: int, seed: int) -> torch.Tensor:
    """softmax_j(q_i . k_j) written out, for the query rows, on the block's input captured in G's forward."""
    block = attention_layers(G)[layer]
    seen = {}
    handle = block.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    g = torch.Generator().manual_seed(seed)
    z = G.sample_latents(1, generator=g)
    with torch.no_grad():
        G(z, torch.tensor([class_id]))
    handle.remove()
    x = seen["x"]
    q = block.query(x).flatten(2)[0].T  # (N, d)
    k = block.key(x)
    if block.variant == "biggan":
        k = torch.nn.functional.max_pool2d(k, 2)
    k = k.flatten(2)[0]  # (d, N_k)
    return torch.softmax(q @ k, dim=-1)[rows]


def test_figure_is_written_and_heatmaps_sum_to_one(tmp_path):
    G = attentive_sagan()
    out = tmp_path / "fig.png"
    heatmaps = attention_figure(G, out, queries=4, class_id=3, seed=1)
    assert out.is_file()
    img = Image.open(out)
    assert img.format == "PNG" and img.width > 400 and img.height > 300  # 2 rows x (1 + 4) panels
    assert list(heatmaps) == ["attention.4", "attention.8"]
    assert heatmaps["attention.8"].shape == (4, 8, 8) and heatmaps["attention.4"].shape == (4, 4, 4)
    for maps in heatmaps.values():
        torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(4))  # before resizing
        assert maps.min() >= 0
    # queries at the quadrant centres: (2, 2), (2, 6), (6, 2), (6, 6) of the 8x8 map -> rows 18, 22, 50, 54
    want = _expected_rows(G, "attention.8", [18, 22, 50, 54], class_id=3, seed=1)
    torch.testing.assert_close(heatmaps["attention.8"].flatten(1), want)
    assert not torch.allclose(heatmaps["attention.8"][0], heatmaps["attention.8"][3])  # queries differ


def test_biggan_variant_attends_over_pooled_keys(tmp_path):
    G = attentive_sagan(attention_variant="biggan", g_attention_resolutions=(8,))
    heatmaps = attention_figure(G, tmp_path / "fig.png", queries=2, class_id=0)
    assert heatmaps["attention.8"].shape == (2, 4, 4)  # N_k = N / 4
    torch.testing.assert_close(heatmaps["attention.8"].sum(dim=(1, 2)), torch.ones(2))


def test_layer_choice_and_errors(tmp_path):
    G = attentive_sagan()
    assert list(attention_figure(G, tmp_path / "a.png", layer="attention.8", queries=1, class_id=0)) == ["attention.8"]
    with pytest.raises(UserError, match="its layers: attention.4, attention.8"):
        attention_figure(G, tmp_path / "b.png", layer="attention.32")
    with pytest.raises(UserError, match="out of range"):
        attention_figure(G, tmp_path / "b.png", class_id=10)
    with pytest.raises(UserError, match="more than the 16 positions"):
        attention_figure(G, tmp_path / "b.png", layer="attention.4", queries=17, class_id=0)
    assert query_grid(4) == [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)]
    assert len(query_grid(3)) == 3


def test_model_without_attention_is_a_clear_error(tmp_path):
    G = SNGANGenerator(sngan_config("mnist"))
    with pytest.raises(UserError, match="sngan generator has no self-attention layers"):
        attention_figure(G, tmp_path / "fig.png")
    assert not (tmp_path / "fig.png").exists()


def test_cli_attention(tmp_path, capsys):
    G = attentive_sagan()
    export = G.save_export(tmp_path / "g.safetensors")
    out = tmp_path / "fig.png"
    assert main(["attention", "--checkpoint", str(export), "--queries", "3", "--class-id", "7", "--out", str(out)]) == 0
    assert out.is_file() and "attention.4, attention.8" in capsys.readouterr().out

    G2 = SNGANGenerator(sngan_config("cnn", image_size=16))
    no_att = G2.save_export(tmp_path / "sn.safetensors")
    assert main(["attention", "--checkpoint", str(no_att), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no self-attention layers" in err
