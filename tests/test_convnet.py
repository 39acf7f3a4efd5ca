"""The conv networks: named specs build the stated shapes, settings replace the spec's, the readout features
pool as stated."""

import pytest
import torch

from lpl.convnet import NETWORKS, ConvNet, NetworkSpec, grid_pool, network_spec
from lpl.load import features
from lpl.validation import LPLError


@pytest.mark.parametrize("name, channels, kernels, sides", [
    ("vgg11", [64, 128, 256, 256, 512, 512, 512, 512], [3] * 8, [16, 8, 8, 4, 4, 2, 2, 1]),
    ("vgg6-wide", [128, 256, 256, 512, 1024, 1024], [3] * 6, [32, 16, 16, 8, 4, 2]),
    ("wide3", [96, 384, 1536], [5, 3, 3], [16, 8, 4]),
])
def test_named_networks_build_the_stated_shapes(name, channels, kernels, sides):
    net = ConvNet(network_spec(name))
    maps = net(torch.rand(2, 3, 32, 32))
    assert [m.shape[1] for m in maps] == channels and [m.shape[-1] for m in maps] == sides
    assert NETWORKS[name].output_sizes(32) == sides
    inputs = [3, *channels[:-1]]
    weights = sum(i * o * k * k for i, o, k in zip(inputs, channels, kernels))
    assert sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight")) == weights


def test_settings_replace_the_named_networks():
    spec = network_spec("vgg11", in_channels=1, channels=[8, 16], kernel_sizes=[5], pool_after=[2], width=0.5,
                        bias=False)
    assert spec == NetworkSpec((4, 8), (5, 5), (2,), False, 1)
    net = ConvNet(spec)
    assert net.blocks[0][0].kernel_size == (5, 5) and net.blocks[0][0].bias is None
    assert [m.shape[-1] for m in net(torch.rand(1, 1, 8, 8))] == [8, 4]
    assert network_spec("wide3").kernel_sizes == (5, 3, 3)
    assert network_spec("wide3", channels=[8, 8, 8, 8], pool_after=[1]).kernel_sizes == (3, 3, 3, 3)  # other depth


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel_sizes": [3, 3]}, "--kernel-sizes needs one positive size per block (8)"),
    ({"pool_after": [9]}, "--pool-after names blocks 1..8"),
    ({"width": 0}, "--width must be positive"),
    ({"channels": [0, 4]}, "--channels needs positive sizes"),
    ({"channels": [4, 4]}, "--channels gives 2 blocks, the vgg11 network has 8: give --pool-after"),
])
def test_bad_network_settings_are_named(kwargs, message):
    with pytest.raises(LPLError, match=message.replace("(", r"\(").replace(")", r"\)")):
        network_spec("vgg11", **kwargs)
    with pytest.raises(LPLError, match="unknown --network 'vgg99'"):
        network_spec("vgg99")


def test_grid_pooling_averages_cells_and_keeps_small_maps():
    maps = torch.arange(2 * 16.0).view(1, 2, 4, 4)
    assert torch.equal(grid_pool(maps, 2), torch.nn.functional.avg_pool2d(maps, 2))
    assert torch.equal(grid_pool(maps, 1).flatten(), maps.mean(dim=(2, 3)).flatten())
    assert grid_pool(maps, 4) is maps and grid_pool(maps, 0) is maps and grid_pool(maps, 9) is maps


def test_the_spatial_readout_sees_where_the_global_one_sees_only_how_much():
    """Images whose class is the bright quadrant: every image has the same total brightness, so globally pooled
    features cannot tell the classes apart, and features pooled to a 2x2 grid tell them apart exactly."""
    net = ConvNet(NetworkSpec((1,), (1,), (), in_channels=1))
    with torch.no_grad():
        net.blocks[0][0].weight.fill_(1.0)
        net.blocks[0][0].bias.zero_()
    labels = torch.arange(40) % 4
    images = torch.zeros(40, 1, 4, 4)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 2)
        images[i, 0, 2 * row:2 * row + 2, 2 * col:2 * col + 2] = 1.0
    (pooled,) = features(net, images)
    (spatial,) = features(net, images, grid=2)
    assert pooled.shape == (40, 1) and torch.unique(pooled).numel() == 1
    assert spatial.shape == (40, 4) and torch.equal(spatial.argmax(1), labels)
